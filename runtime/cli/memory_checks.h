// What a run will allocate against what the machine has, checked before the allocations that
// would otherwise end the process without a readable reason (the host allocator's abort, the
// kernel's OOM killer, a failed cudaMalloc) and, for the weights, before a load that takes minutes.
#ifndef CHAI_RUNTIME_CLI_MEMORY_CHECKS_H_
#define CHAI_RUNTIME_CLI_MEMORY_CHECKS_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "kernels/tensor.h"
#include "runtime/model_config.h"

namespace chai {

// The weights of `config` split over `world` ranks, `local_ranks` of them on this host: on a GPU
// against its free memory, on the CPU against the host's available memory shared by its ranks.
absl::Status CheckWeightsFit(const std::string& model, const ModelConfig& config, int world, int local_ranks,
                             DType dtype, Device device);

// A KV pool of `blocks` blocks of `block_bytes` per rank, sized for `what` ("--kv-cache-gb 8", "64
// sequences of 4096 positions"): at most INT32_MAX blocks (ids are 32-bit), and on a GPU within its
// free memory (the weights loaded), on the CPU within the host's available memory over its ranks.
absl::Status CheckKvCacheFits(double blocks, int64_t block_bytes, Device device, int local_ranks,
                              const std::string& what);

}  // namespace chai

#endif  // CHAI_RUNTIME_CLI_MEMORY_CHECKS_H_
