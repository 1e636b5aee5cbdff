// A process-wide pool of worker threads for the CPU reference ops.
//
// Why not std::async per op: ops run thousands of times per generated token, and thread start
// cost would dominate small models. CHAI_NUM_THREADS overrides the hardware thread count.
#ifndef CHAI_KERNELS_CPU_PARALLEL_FOR_H_
#define CHAI_KERNELS_CPU_PARALLEL_FOR_H_

#include <cstdint>
#include <functional>

namespace chai::cpu {

// Calls fn(begin, end) on disjoint chunks covering [0, n); returns when all are done.
// Runs inline when n is small (below min_chunk) or only one thread is configured.
void ParallelFor(int64_t n, int64_t min_chunk, const std::function<void(int64_t, int64_t)>& fn);

int NumThreads();

}  // namespace chai::cpu

#endif  // CHAI_KERNELS_CPU_PARALLEL_FOR_H_
