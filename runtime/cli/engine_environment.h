// The decode step's run-time settings from the environment, read and checked before any weights
// load: a bad value is an error naming the variable, not a silent default (or an error a minute
// into loading a large model).
#ifndef CHAI_RUNTIME_CLI_ENGINE_ENVIRONMENT_H_
#define CHAI_RUNTIME_CLI_ENGINE_ENVIRONMENT_H_

#include "absl/status/statusor.h"
#include "kernels/tensor.h"
#include "runtime/engine.h"

namespace chai {

// EngineOptions from CHAI_NO_GRAPHS, CHAI_DECODE_FUSION, CHAI_DECODE_QKV_APPEND,
// CHAI_ALLREDUCE_IN_GEMV and CHAI_L2_PREFETCH (their meanings: runtime/engine.h and
// docs/cuda-backend.md), with the defaults for `device` where a variable is unset. The KV cache's
// shape (block size, blocks, sequences) is left to the caller.
absl::StatusOr<EngineOptions> EngineOptionsFromEnvironment(Device device);

// The defaults that depend on the rank count, where no variable set them (the L2 hint at TP > 1).
void ApplyTensorParallelDefaults(int world, EngineOptions* kv);

}  // namespace chai

#endif  // CHAI_RUNTIME_CLI_ENGINE_ENVIRONMENT_H_
