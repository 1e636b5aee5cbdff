// Pieces shared by the IPC all-reduce kernels (ipc_allreduce_kernel.cu, ipc_allreduce_lamport.cu):
// 16-byte groups of a message and the rank-order sum. Internal to parallel/.
#ifndef CHAI_PARALLEL_IPC_ALLREDUCE_GROUPS_CUH_
#define CHAI_PARALLEL_IPC_ALLREDUCE_GROUPS_CUH_

#include <cstdint>

#include "kernels/cuda/cuda_utils.cuh"

namespace chai::ipc {

using cuda::FromFloat;
using cuda::ToFloat;
using cuda::Vec;

// Group g of `n` elements: one 16-byte access when whole and aligned, else element by element
// (missing elements read as zero and are never written).
template <typename T, int N>
__device__ __forceinline__ Vec<T, N> LoadGroup(const T* p, int64_t g, int64_t n, bool aligned) {
  const int64_t first = g * N;
  if (aligned && first + N <= n) return *reinterpret_cast<const Vec<T, N>*>(p + first);
  Vec<T, N> v;
#pragma unroll
  for (int j = 0; j < N; ++j) v.v[j] = first + j < n ? p[first + j] : FromFloat<T>(0.f);
  return v;
}

template <typename T, int N>
__device__ __forceinline__ void StoreGroup(T* p, int64_t g, int64_t n, bool aligned, const Vec<T, N>& v) {
  const int64_t first = g * N;
  if (aligned && first + N <= n) {
    *reinterpret_cast<Vec<T, N>*>(p + first) = v;
    return;
  }
#pragma unroll
  for (int j = 0; j < N; ++j) {
    if (first + j < n) p[first + j] = v.v[j];
  }
}

// The ranks' groups summed in fp32 in rank order 0..W-1 and rounded once: every rank gets the
// same bits, whichever variant gathered them.
template <typename T, int N, int W>
__device__ __forceinline__ Vec<T, N> RankOrderSum(const Vec<T, N> (&v)[W]) {
  float acc[N];
#pragma unroll
  for (int j = 0; j < N; ++j) acc[j] = ToFloat(v[0].v[j]);
#pragma unroll
  for (int q = 1; q < W; ++q) {
#pragma unroll
    for (int j = 0; j < N; ++j) acc[j] += ToFloat(v[q].v[j]);
  }
  Vec<T, N> r;
#pragma unroll
  for (int j = 0; j < N; ++j) r.v[j] = FromFloat<T>(acc[j]);
  return r;
}

}  // namespace chai::ipc

#endif  // CHAI_PARALLEL_IPC_ALLREDUCE_GROUPS_CUH_
