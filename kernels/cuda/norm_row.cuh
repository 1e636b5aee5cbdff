// One row of LayerNorm (OPT) or RMSNorm (LLaMA) by a whole thread block: the passes of
// norm.cu's kernels, shared with the fused all-reduce + residual + norm of parallel/ (whose first
// load sums the ranks' partials), so both round identically.
//
// Statistics in fp32 with tree reductions; LayerNorm takes two passes over the row (mean, then
// the centred variance) so that a large mean cannot cancel the variance. The later passes
// re-read the row from L1/L2, not DRAM. out may alias in: every element is read before the
// final pass writes it, and the reductions' barriers separate the passes.
#ifndef CHAI_KERNELS_CUDA_NORM_ROW_CUH_
#define CHAI_KERNELS_CUDA_NORM_ROW_CUH_

#include "kernels/cuda/cuda_utils.cuh"

namespace chai::cuda {

// Threads per row for a row of `vecs` vectors. Rows of up to 8K elements at 8 per vector need
// only 1024 lanes of work; 256 threads keep several rows resident per SM in prefill and still
// spread a decode row over 8 warps. A caller with a larger block passes this to NormRow so that
// its sums run in the same order as the norm kernel's (the fused all-reduce + norm does).
inline int NormRowThreads(int64_t vecs) { return RowThreads(vecs, vecs >= 2048 ? 512 : 256); }

// `in` holds the row's cols = vecs * N elements once first_load(i) has run for every vector i
// this thread visits (threadIdx.x, + threads, ...; threads >= threadIdx.x + 1 visit none):
// first_load returns vector i and may store it into `in` (the fused residual add); later passes
// re-read `in`, each thread its own vectors. Every thread of the block must call it (block
// reductions; idle threads add zeros, which leaves the sums' bits unchanged). threads: a
// multiple of 32, at most blockDim.x. scratch: 32 floats of shared memory.
template <typename T, int N, bool kRms, typename FirstLoad>
__device__ __forceinline__ void NormRow(const T* in, FirstLoad first_load, const T* weight, const T* bias, float eps,
                                        int64_t cols, T* out, float* scratch, int threads) {
  const int64_t vecs = cols / N;
  const int64_t first = threadIdx.x < threads ? threadIdx.x : vecs;
  float mean = 0.f;
  if constexpr (!kRms) {
    float sum = 0.f;
    for (int64_t i = first; i < vecs; i += threads) {
      const Vec<T, N> v = first_load(i);
#pragma unroll
      for (int j = 0; j < N; ++j) sum += ToFloat(v.v[j]);
    }
    mean = BlockSum(sum, scratch) / static_cast<float>(cols);
  }
  float ss = 0.f;
  for (int64_t i = first; i < vecs; i += threads) {
    const Vec<T, N> v = kRms ? first_load(i) : LoadVec<T, N>(in + i * N);
#pragma unroll
    for (int j = 0; j < N; ++j) {
      const float d = ToFloat(v.v[j]) - mean;
      ss += d * d;
    }
  }
  const float inv = rsqrtf(BlockSum(ss, scratch) / static_cast<float>(cols) + eps);

  for (int64_t i = first; i < vecs; i += threads) {
    const Vec<T, N> v = LoadVec<T, N>(in + i * N);
    const Vec<T, N> w = LoadVec<T, N>(weight + i * N);
    Vec<T, N> b;
    if (bias != nullptr) b = LoadVec<T, N>(bias + i * N);
    Vec<T, N> r;
#pragma unroll
    for (int j = 0; j < N; ++j) {
      float y = (ToFloat(v.v[j]) - mean) * inv * ToFloat(w.v[j]);
      if (bias != nullptr) y += ToFloat(b.v[j]);
      r.v[j] = FromFloat<T>(y);
    }
    StoreVec<T, N>(out + i * N, r);
  }
}

}  // namespace chai::cuda

#endif  // CHAI_KERNELS_CUDA_NORM_ROW_CUH_
