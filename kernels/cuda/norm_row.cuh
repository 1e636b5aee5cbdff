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

// The residual add of the fused norms, element by element in fp32 and rounded to T: the norm
// kernel's x + y and the all-reduce + norm's x + (the ranks' sum) round alike.
template <typename T, int N>
__device__ __forceinline__ Vec<T, N> AddRounded(const Vec<T, N>& a, const Vec<T, N>& b) {
  Vec<T, N> r;
#pragma unroll
  for (int j = 0; j < N; ++j) r.v[j] = FromFloat<T>(ToFloat(a.v[j]) + ToFloat(b.v[j]));
  return r;
}

// The per-vector steps of NormRow's passes: the sum (LayerNorm's mean), the squares about the
// mean, the output.
template <typename T, int N>
__device__ __forceinline__ void AddToSum(const Vec<T, N>& v, float& sum) {
#pragma unroll
  for (int j = 0; j < N; ++j) sum += ToFloat(v.v[j]);
}

template <typename T, int N>
__device__ __forceinline__ void AddSquaresAbout(const Vec<T, N>& v, float mean, float& ss) {
#pragma unroll
  for (int j = 0; j < N; ++j) {
    const float d = ToFloat(v.v[j]) - mean;
    ss = __fmaf_rn(d, d, ss);
  }
}

// (v - mean) * inv * w (+ b). The roundings are explicit (here and in the variance's sum): left to
// nvcc, a * b + c became one fma in some instances of this code and two roundings in others, and
// the norm kernel's LayerNorm and the fused all-reduce + norm's came out a bit apart.
template <typename T, int N>
__device__ __forceinline__ Vec<T, N> Normalized(const Vec<T, N>& v, const Vec<T, N>& w, const Vec<T, N>& b,
                                                bool has_bias, float mean, float inv) {
  Vec<T, N> r;
#pragma unroll
  for (int j = 0; j < N; ++j) {
    const float scaled = __fmul_rn(ToFloat(v.v[j]) - mean, inv);
    r.v[j] = FromFloat<T>(has_bias ? __fmaf_rn(scaled, ToFloat(w.v[j]), ToFloat(b.v[j]))
                                   : __fmul_rn(scaled, ToFloat(w.v[j])));
  }
  return r;
}

// The last pass, out = (in - mean) * inv * weight (+ bias): element by element once the statistics
// are known, so any `threads` threads of the block may share it (thread t: vectors t, t + threads,
// ...). Each thread loads K vectors of in, weight and bias before it stores any: out may
// alias in, so the compiler cannot move a later vector's loads above an earlier store, and one
// vector at a time made a round trip each (five a thread at OPT-66B's 9216 columns on 256 threads,
// weights from DRAM).
template <typename T, int N, int K>
__device__ __forceinline__ void NormRowOutput(const T* in, const T* weight, const T* bias, float mean, float inv,
                                              int64_t vecs, T* out, int threads) {
  if (threadIdx.x >= threads) return;
  for (int64_t i0 = threadIdx.x; i0 < vecs; i0 += int64_t{threads} * K) {
    Vec<T, N> v[K], w[K], b[K];
#pragma unroll
    for (int k = 0; k < K; ++k) {
      const int64_t i = i0 + int64_t{k} * threads;
      if (i >= vecs) continue;
      v[k] = LoadVec<T, N>(in + i * N);
      w[k] = LoadVec<T, N>(weight + i * N);
      if (bias != nullptr) b[k] = LoadVec<T, N>(bias + i * N);
    }
#pragma unroll
    for (int k = 0; k < K; ++k) {
      const int64_t i = i0 + int64_t{k} * threads;
      if (i >= vecs) continue;
      StoreVec<T, N>(out + i * N, Normalized<T, N>(v[k], w[k], b[k], bias != nullptr, mean, inv));
    }
  }
}

// `in` holds the row's cols = vecs * N elements once first_load(i) has run for every vector i
// this thread visits (threadIdx.x, + threads, ...; threads >= threadIdx.x + 1 visit none):
// first_load returns vector i and may store it into `in` (the fused residual add); later passes
// re-read `in`, each thread its own vectors. Every thread of the block must call it (block
// reductions; idle threads add zeros, which leaves the sums' bits unchanged). threads: a
// multiple of 32, at most blockDim.x. scratch: 32 floats of shared memory. out_threads: the
// threads of the last pass (NormRowOutput), `threads` when 0; the sums' order does not depend on it.
// kOutBatch: the vectors a thread of the last pass loads before its first store.
template <typename T, int N, bool kRms, int kOutBatch = 2, typename FirstLoad>
__device__ __forceinline__ void NormRow(const T* in, FirstLoad first_load, const T* weight, const T* bias, float eps,
                                        int64_t cols, T* out, float* scratch, int threads,
                                        int out_threads = 0) {
  const int64_t vecs = cols / N;
  const int64_t first = threadIdx.x < threads ? threadIdx.x : vecs;
  float mean = 0.f;
  if constexpr (!kRms) {
    float sum = 0.f;
    for (int64_t i = first; i < vecs; i += threads) AddToSum<T, N>(first_load(i), sum);
    mean = BlockSum(sum, scratch) / static_cast<float>(cols);
  }
  float ss = 0.f;
  for (int64_t i = first; i < vecs; i += threads) {
    AddSquaresAbout<T, N>(kRms ? first_load(i) : LoadVec<T, N>(in + i * N), mean, ss);
  }
  const float inv = rsqrtf(BlockSum(ss, scratch) / static_cast<float>(cols) + eps);
  NormRowOutput<T, N, kOutBatch>(in, weight, bias, mean, inv, vecs, out, out_threads > 0 ? out_threads : threads);
}

}  // namespace chai::cuda

#endif  // CHAI_KERNELS_CUDA_NORM_ROW_CUH_
