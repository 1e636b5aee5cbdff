// `chai`: one executable with subcommands. Errors print one line and exit non-zero.
#include <cstdio>
#include <string>
#include <vector>

#include "runtime/cli/commands.h"

namespace {

constexpr char kUsage[] =
    "usage: chai <command> [flags]\n"
    "commands:\n"
    "  generate   run a prompt and print the generated tokens (chai generate --help)\n"
    "Without --model, generate uses configs/models/opt-125m.json with random weights.\n";

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const std::string command = argv[1];
  std::vector<std::string> args(argv + 2, argv + argc);
  absl::Status status;
  if (command == "generate") {
    status = chai::RunGenerate(args);
  } else {
    std::fprintf(stderr, "chai: error: unknown command '%s' (see chai --help)\n", command.c_str());
    return 2;
  }
  if (!status.ok()) {
    std::fprintf(stderr, "chai: error: %s\n", std::string(status.message()).c_str());
    return 1;
  }
  return 0;
}
