#include "tests/support/chai_cli.h"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/support/test_paths.h"

namespace chai::testing {

namespace {

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

}  // namespace

ChaiCliResult RunChaiCli(const std::string& args, const std::string& env) {
  namespace fs = std::filesystem;
  // Per process: ctest may run several test binaries at once.
  const std::string stem = fs::temp_directory_path() / absl::StrCat("chai_cli_", getpid());
  const std::string out = stem + ".out", err = stem + ".err";
  const std::string cmd =
      absl::StrCat(env.empty() ? "" : absl::StrCat("env ", env, " "), ChaiBinary(), " ", args, " >", out, " 2>", err);
  const int status = std::system(cmd.c_str());
  ChaiCliResult r{WIFEXITED(status) ? WEXITSTATUS(status) : 128, Slurp(out), Slurp(err)};
  fs::remove(out);
  fs::remove(err);
  return r;
}

void ExpectChaiCliError(const std::string& args, const std::string& needle) {
  const ChaiCliResult r = RunChaiCli(args);
  EXPECT_NE(r.exit_code, 0) << args;
  EXPECT_LT(r.exit_code, 128) << "crashed: " << args;
  EXPECT_EQ(r.err.rfind("chai: error:", 0), 0u) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_NE(r.err.find(needle), std::string::npos) << "expected '" << needle << "' in: " << r.err;
}

}  // namespace chai::testing
