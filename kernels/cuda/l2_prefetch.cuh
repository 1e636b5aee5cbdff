// Issuing an L2Prefetch hint (kernels/l2_prefetch.h) from a kernel: each range is one
// `cp.async.bulk.prefetch.L2` (sm_90), shared out over the threads that call it. Fire and forget:
// the copy engine fetches the lines into L2 and nothing waits for them, so the calling kernel may
// exit at once. Below sm_90 it does nothing (the hint is a speed hint only).
#ifndef CHAI_KERNELS_CUDA_L2_PREFETCH_CUH_
#define CHAI_KERNELS_CUDA_L2_PREFETCH_CUH_

#include <cstdint>

#include "kernels/l2_prefetch.h"

namespace chai::cuda {

// Ranges worker, worker + workers, ... of `p` (range r: set r / (outer * inner), then i, then j).
// Callers number their workers so that consecutive ranges fall to different CTAs.
__device__ __forceinline__ void IssueL2Prefetch(const L2Prefetch& p, int64_t worker, int64_t workers) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  if (p.base == nullptr || p.outer <= 0 || p.inner <= 0 || p.bytes <= 0) return;  // L2Prefetch::empty()
  const int64_t per_set = p.outer * p.inner;
  const int64_t total = (p.base2 != nullptr ? 2 : 1) * per_set;
  for (int64_t r = worker; r < total; r += workers) {
    const int64_t set = r / per_set, rest = r % per_set, i = rest / p.inner, j = rest % p.inner;
    const char* src = static_cast<const char*>(set == 0 ? p.base : p.base2) + i * p.outer_stride + j * p.inner_stride;
    asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;\n" ::"l"(src), "r"(static_cast<uint32_t>(p.bytes))
                 : "memory");
  }
#endif
}

}  // namespace chai::cuda

#endif  // CHAI_KERNELS_CUDA_L2_PREFETCH_CUH_
