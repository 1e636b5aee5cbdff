// The decode GEMV's add + norm tail (gemv::Output::kStoreAddNorm, ops::LinearAddNorm): after the
// CTAs have stored out = P (the row-parallel o or down projection's output at TP = 1), the last
// CTA of the grid to finish adds out into the residual stream and normalises it, which the
// add + norm kernel after the GEMV did. Why: at batch 1 that kernel is ~3 us of latency-bound work
// plus a dependent launch, twice a layer, while DRAM idles; here the work starts as soon as the
// last output is stored, without a kernel boundary.
//
// Correctness: each CTA's stores are made visible (__threadfence) before its arrival is counted
// (one atomic per CTA on a grid counter, which the last CTA resets for the next launch), and the
// last CTA fences again before reading the other CTAs' outputs through L2 (ld.global.cg). The
// rows then go through NormRow (norm_row.cuh) with the norm kernel's thread count and the same
// first-pass add, so x and the normed output equal Linear then AddRmsNorm / AddLayerNorm bit for
// bit. The rows are done one after another by that one CTA, so the tail grows with T; the engine
// uses it where it was measured faster.
//
// While the last CTAs drain, the earlier ones issue their share of the L2 prefetch hint of the
// next GEMV's first weights (kernels/l2_prefetch.h), as the add + norm kernel's extra CTAs did.
#ifndef CHAI_KERNELS_CUDA_GEMV_ADD_NORM_CUH_
#define CHAI_KERNELS_CUDA_GEMV_ADD_NORM_CUH_

#include <cstdint>

#include "kernels/cuda/cuda_utils.cuh"
#include "kernels/cuda/l2_prefetch.cuh"
#include "kernels/cuda/norm_row.cuh"
#include "kernels/cuda/pdl.cuh"
#include "kernels/l2_prefetch.h"

namespace chai::cuda::gemv {

// The tail's operands (all of the GEMV's dtype, rows of n elements, 16-byte aligned; the host
// checks). x: the residual stream [T, n], updated in place; normed [T, n] may alias x.
struct AddNorm {
  void* x = nullptr;
  const void* weight = nullptr;
  const void* bias = nullptr;  // LayerNorm's; null for RMSNorm
  void* normed = nullptr;
  float eps = 0.f;
  bool rms = true;
  int threads = 0;  // NormRowThreads of a row: the norm kernel's block, at most the GEMV's
  unsigned* counter = nullptr;  // CTAs arrived; 0 between launches
  L2Prefetch then;
};

// Before the PDL wait: the norm weights (a few KB, evicted by the weight stream since the last
// step) into L2, by the first CTA.
template <typename T>
__device__ __forceinline__ void PrefetchAddNormWeights(const AddNorm& a, int64_t n) {
  if (blockIdx.x != 0 || blockIdx.y != 0) return;
  for (int64_t i = threadIdx.x * int64_t{kVec16<T>}; i < n; i += int64_t{blockDim.x} * kVec16<T>) {
    PrefetchL2(static_cast<const T*>(a.weight) + i);
    if (a.bias != nullptr) PrefetchL2(static_cast<const T*>(a.bias) + i);
  }
}

// Called by every CTA that stored outputs (all gridDim.x row blocks: with split K, the last CTA of
// each), after its stores. `out` holds P [tokens, n].
template <typename T>
__device__ __forceinline__ void AddNormTail(const AddNorm& a, const T* out, int tokens, int64_t n) {
  __threadfence();  // this CTA's outputs are visible before its arrival is counted
  __syncthreads();
  __shared__ bool last;
  if (threadIdx.x == 0) last = atomicAdd(a.counter, 1u) == gridDim.x - 1;
  __syncthreads();
  if (!last) {
    IssueL2Prefetch(a.then, int64_t{threadIdx.x} * gridDim.x + blockIdx.x, int64_t{gridDim.x} * blockDim.x);
    return;
  }
  __threadfence();
  constexpr int N = kVec16<T>;
  __shared__ float scratch[32];
  T* x = static_cast<T*>(a.x);
  T* normed = static_cast<T*>(a.normed);
  const T* weight = static_cast<const T*>(a.weight);
  const T* bias = static_cast<const T*>(a.bias);
  for (int t = 0; t < tokens; ++t) {
    T* row = x + t * n;
    const T* p = out + t * n;
    // NormKernel's first load with the residual: x + P rounded to T, stored back into x.
    auto first_load = [&](int64_t i) {
      Vec<T, N> v = LoadVec<T, N>(row + i * N);
      const uint4 bits = __ldcg(reinterpret_cast<const uint4*>(p + i * N));  // other SMs stored it
      const Vec<T, N> r = *reinterpret_cast<const Vec<T, N>*>(&bits);
#pragma unroll
      for (int j = 0; j < N; ++j) v.v[j] = FromFloat<T>(ToFloat(v.v[j]) + ToFloat(r.v[j]));
      StoreVec<T, N>(row + i * N, v);
      return v;
    };
    if (a.rms) {
      NormRow<T, N, true>(row, first_load, weight, nullptr, a.eps, n, normed + t * n, scratch, a.threads);
    } else {
      NormRow<T, N, false>(row, first_load, weight, bias, a.eps, n, normed + t * n, scratch, a.threads);
    }
    __syncthreads();  // the next row's reductions reuse scratch
  }
  if (threadIdx.x == 0) *a.counter = 0;  // ready for the next launch (stream order)
}

}  // namespace chai::cuda::gemv

#endif  // CHAI_KERNELS_CUDA_GEMV_ADD_NORM_CUH_
