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

// NormRow's row held in registers (kHold > 0 and at most kHold vectors per thread): the weights
// (and bias) loaded first, so that their DRAM round trip overlaps the first pass and the
// reductions instead of following them, then the passes over the registers, with no re-read of the
// row. Same arithmetic in the same order as NormRow's loops, so the same bits. Vectors k = 0, 1, .. of this
// thread are i = first + k * threads, the order NormRow's loops visit them.
template <typename T, int N, bool kRms, int kHold, typename FirstLoad>
__device__ __forceinline__ void NormRowHeld(FirstLoad first_load, const T* weight, const T* bias, float eps,
                                            int64_t cols, T* out, float* scratch, int threads) {
  const int64_t vecs = cols / N;
  const int64_t first = threadIdx.x < threads ? threadIdx.x : vecs;
  Vec<T, N> xs[kHold], ws[kHold], bs[kHold];
#pragma unroll
  for (int k = 0; k < kHold; ++k) {
    const int64_t i = first + int64_t{k} * threads;
    if (i < vecs) {
      ws[k] = LoadVec<T, N>(weight + i * N);
      if (bias != nullptr) bs[k] = LoadVec<T, N>(bias + i * N);
    }
  }
#pragma unroll
  for (int k = 0; k < kHold; ++k) {
    const int64_t i = first + int64_t{k} * threads;
    if (i < vecs) xs[k] = first_load(i);
  }
  float mean = 0.f;
  if constexpr (!kRms) {
    float sum = 0.f;
#pragma unroll
    for (int k = 0; k < kHold; ++k) {
      if (first + int64_t{k} * threads >= vecs) continue;
#pragma unroll
      for (int j = 0; j < N; ++j) sum += ToFloat(xs[k].v[j]);
    }
    mean = BlockSum(sum, scratch) / static_cast<float>(cols);
  }
  float ss = 0.f;
#pragma unroll
  for (int k = 0; k < kHold; ++k) {
    if (first + int64_t{k} * threads >= vecs) continue;
#pragma unroll
    for (int j = 0; j < N; ++j) {
      const float d = ToFloat(xs[k].v[j]) - mean;
      ss += d * d;
    }
  }
  const float inv = rsqrtf(BlockSum(ss, scratch) / static_cast<float>(cols) + eps);
#pragma unroll
  for (int k = 0; k < kHold; ++k) {
    const int64_t i = first + int64_t{k} * threads;
    if (i >= vecs) continue;
    Vec<T, N> r;
#pragma unroll
    for (int j = 0; j < N; ++j) {
      float y = (ToFloat(xs[k].v[j]) - mean) * inv * ToFloat(ws[k].v[j]);
      if (bias != nullptr) y += ToFloat(bs[k].v[j]);
      r.v[j] = FromFloat<T>(y);
    }
    StoreVec<T, N>(out + i * N, r);
  }
}

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
// kHold > 0: rows of at most kHold vectors per thread take NormRowHeld (norm.cu's experiment).
template <typename T, int N, bool kRms, typename FirstLoad, int kHold = 0>
__device__ __forceinline__ void NormRow(const T* in, FirstLoad first_load, const T* weight, const T* bias, float eps,
                                        int64_t cols, T* out, float* scratch, int threads) {
  const int64_t vecs = cols / N;
  if constexpr (kHold > 0) {
    if ((vecs + threads - 1) / threads <= kHold) {  // the same for every thread of the block
      NormRowHeld<T, N, kRms, kHold>(first_load, weight, bias, eps, cols, out, scratch, threads);
      return;
    }
  }
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
