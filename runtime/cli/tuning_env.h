// The CHAI_* environment variables a run was started with that change what it computes or how
// fast (kernel choices, fusions, PDL, prefetch budgets, all-reduce paths...), so that `chai bench`
// can print them above its table and record them in its JSON: a result that names its settings
// can be reproduced. Only the variables the runtime reads count (IsTuningVariable): build and
// launch scripts' variables (CHAI_CMAKE_ARGS, CHAI_BIN, ...), file locations and log choices do not.
#ifndef CHAI_RUNTIME_CLI_TUNING_ENV_H_
#define CHAI_RUNTIME_CLI_TUNING_ENV_H_

#include <string>
#include <utility>
#include <vector>

namespace chai {

// Whether the runtime reads `name` as a setting (tuning_env_test keeps this in step with the
// variables the sources name).
bool IsTuningVariable(const std::string& name);

// (name, value) of every such variable set now, sorted by name. Call it before anything sets
// variables for itself (LoadModel sets CHAI_NUM_THREADS when the user did not).
std::vector<std::pair<std::string, std::string>> TuningEnvironment();

// "NAME=value NAME=value" in that order; empty for none.
std::string DescribeTuningEnvironment(const std::vector<std::pair<std::string, std::string>>& vars);

}  // namespace chai

#endif  // CHAI_RUNTIME_CLI_TUNING_ENV_H_
