// Helpers shared by `chai bench`'s two modes: latency (bench_command.cc) and throughput
// (bench_throughput.cc).
#ifndef CHAI_RUNTIME_CLI_BENCH_COMMON_H_
#define CHAI_RUNTIME_CLI_BENCH_COMMON_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "runtime/json.h"

namespace chai {

// The CHAI_* tuning variables a run was started with (TuningEnvironment, runtime/cli/tuning_env.h).
using EnvVars = std::vector<std::pair<std::string, std::string>>;

// A comma-separated list of positive integers for --flag ("1,8,32"); a clear error otherwise.
absl::StatusOr<std::vector<int>> ParseIntList(const std::string& flag, const std::string& text);

// The fields both modes' --json files open with: mode, model, device, dtype, tp, chai (the
// schedule as given) and the tuning environment.
Json BenchJsonHeader(const std::string& mode, const std::string& model, const std::string& device,
                     const std::string& dtype, int tp, const std::string& chai, const EnvVars& tuning);

// The line under a table's title naming the tuning variables set, if any.
void PrintTuningEnvironment(const EnvVars& vars);

// `chai bench --mode throughput` with its own flags.
absl::Status RunThroughputMode(const std::vector<std::string>& args);

}  // namespace chai

#endif  // CHAI_RUNTIME_CLI_BENCH_COMMON_H_
