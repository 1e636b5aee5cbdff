// The `chai` subcommands. Each takes the arguments after its name and returns the exit code;
// errors are returned as statuses and printed by main as one line.
#ifndef CHAI_RUNTIME_CLI_COMMANDS_H_
#define CHAI_RUNTIME_CLI_COMMANDS_H_

#include <string>
#include <vector>

#include "absl/status/status.h"

namespace chai {

absl::Status RunGenerate(const std::vector<std::string>& args);
absl::Status RunBench(const std::vector<std::string>& args);
absl::Status RunEval(const std::vector<std::string>& args);
absl::Status RunCalibrate(const std::vector<std::string>& args);

}  // namespace chai

#endif  // CHAI_RUNTIME_CLI_COMMANDS_H_
