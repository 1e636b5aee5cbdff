// `chai` with no command, `chai --help` / `help`, and every command's --help (also as `chai help
// COMMAND`): the usage on stdout and exit 0 when asked for, on stderr and exit 2 when no command
// was given; each command's usage names its flags.
#include <string>

#include "gtest/gtest.h"
#include "tests/support/chai_cli.h"

namespace chai::testing {
namespace {

const char* const kCommands[] = {"generate", "bench", "eval", "calibrate"};

TEST(CliHelp, NoCommandPrintsTheUsageAndFails) {
  const ChaiCliResult r = RunChaiCli("");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err.rfind("usage: chai <command> [flags]\n", 0), 0u) << r.err;
}

TEST(CliHelp, TopLevelHelpListsEveryCommand) {
  for (const char* ask : {"--help", "-h", "help"}) {
    const ChaiCliResult r = RunChaiCli(ask);
    EXPECT_EQ(r.exit_code, 0) << ask << ": " << r.err;
    EXPECT_EQ(r.out.rfind("usage: chai <command> [flags]\n", 0), 0u) << ask << ": " << r.out;
    for (const char* command : kCommands) {
      EXPECT_NE(r.out.find(std::string("  ") + command + " "), std::string::npos) << ask << " lacks " << command;
    }
  }
}

TEST(CliHelp, EveryCommandsHelpBothWays) {
  for (const char* command : kCommands) {
    const ChaiCliResult flag = RunChaiCli(std::string(command) + " --help");
    EXPECT_EQ(flag.exit_code, 0) << command << ": " << flag.err;
    EXPECT_EQ(flag.out.rfind(std::string("usage: chai ") + command, 0), 0u) << flag.out;
    EXPECT_NE(flag.out.find("  --model VALUE"), std::string::npos) << flag.out;
    const ChaiCliResult word = RunChaiCli(std::string("help ") + command);
    EXPECT_EQ(word.exit_code, 0) << command << ": " << word.err;
    EXPECT_EQ(word.out, flag.out) << command;
  }
  ExpectChaiCliError("help frobnicate", "unknown command 'frobnicate'");
}

}  // namespace
}  // namespace chai::testing
