// Running the real `chai` binary from a test, as a user would: its exit code, stdout and stderr.
#ifndef CHAI_TESTS_SUPPORT_CHAI_CLI_H_
#define CHAI_TESTS_SUPPORT_CHAI_CLI_H_

#include <string>

namespace chai::testing {

struct ChaiCliResult {
  int exit_code;  // 128 when the process did not exit normally (a crash)
  std::string out, err;
};

// `chai ARGS` (shell words), with the VAR=value words of `env` set for it when given.
ChaiCliResult RunChaiCli(const std::string& args, const std::string& env = "");

// Bad input: a non-zero exit without a crash, and one stderr line starting "chai: error:" that
// contains `needle`.
void ExpectChaiCliError(const std::string& args, const std::string& needle);

}  // namespace chai::testing

#endif  // CHAI_TESTS_SUPPORT_CHAI_CLI_H_
