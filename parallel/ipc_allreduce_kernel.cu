// The one-shot all-reduce kernel: copy in, one round of flags, sum every rank's copy.
//
// Work split: the message is cut into groups of 16 bytes (the last one may be partial) and group
// g belongs to thread g mod (blocks * threads), in both phases and on every rank, since it
// depends only on the element count, the dtype and the fixed grid. So block b of every rank
// writes and reads the same groups, and one flag per (block, rank) pair is enough: when block b
// sees every peer's flag for this epoch, every group block b will read has been written.
//
// Memory ordering follows the pattern of vLLM's custom all-reduce: plain stores of the data by
// all threads, __syncthreads, then one thread per peer stores the flag with st.release.sys
// (cumulative over the block's stores that the barrier ordered before it); the reader polls its
// own flag slots with ld.acquire.sys, __syncthreads, then all threads load peers' data.
// Epoch and flags are 64-bit, so they never wrap; a peer at most one call ahead may already
// have stored epoch + 1 in a slot, hence the wait for ">= epoch", not "==".
#include <cstdint>

#include "kernels/cuda/cuda_utils.cuh"
#include "parallel/ipc_allreduce_kernel.h"

namespace chai::ipc {
namespace {

using cuda::FromFloat;
using cuda::kVec16;
using cuda::ToFloat;
using cuda::Vec;

__device__ __forceinline__ void StoreRelease(uint64_t* p, uint64_t v) {
  asm volatile("st.release.sys.global.u64 [%0], %1;" ::"l"(p), "l"(v) : "memory");
}

__device__ __forceinline__ uint64_t LoadAcquire(const uint64_t* p) {
  uint64_t v;
  asm volatile("ld.acquire.sys.global.u64 %0, [%1];" : "=l"(v) : "l"(p) : "memory");
  return v;
}

// Tells rank q that this block reached `epoch`. The unrolled branches index peers.base with
// constants only: a run-time index would copy the parameter array to local memory.
template <int W>
__device__ __forceinline__ void Signal(const Peers& peers, int q, int rank, uint64_t epoch) {
#pragma unroll
  for (int p = 0; p < W; ++p) {
    if (p != q) continue;
    uint64_t* const slot = reinterpret_cast<uint64_t*>(peers.base[p] + kFlagsOffset) + blockIdx.x * kMaxRanks + rank;
    StoreRelease(slot, epoch);
  }
}

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

// W ranks; `self` is peers.base[rank]. `half` is the size of one data half; the epoch's parity picks the half.
template <typename T, int W>
__global__ void __launch_bounds__(kThreads)
    OneShotAllReduce(Peers peers, char* self, int rank, size_t half, const T* in, T* out, int64_t n) {
  constexpr int N = kVec16<T>;
  uint64_t* const flags = reinterpret_cast<uint64_t*>(self + kFlagsOffset) + blockIdx.x * kMaxRanks;
  uint64_t* const epochs = reinterpret_cast<uint64_t*>(self + kEpochsOffset);
  // Read by every thread before the first barrier; thread 0 writes it back after it.
  const uint64_t epoch = epochs[blockIdx.x] + 1;
  const size_t data = kDataOffset + (epoch & 1) * half;
  const int64_t groups = (n + N - 1) / N;
  const int64_t stride = int64_t{gridDim.x} * blockDim.x;
  const int64_t start = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  const bool in_aligned = reinterpret_cast<uintptr_t>(in) % 16 == 0;
  const bool out_aligned = reinterpret_cast<uintptr_t>(out) % 16 == 0;

  T* const mine = reinterpret_cast<T*>(self + data);
  for (int64_t g = start; g < groups; g += stride) {
    StoreGroup<T, N>(mine, g, n, true, LoadGroup<T, N>(in, g, n, in_aligned));
  }
  __syncthreads();
  if (threadIdx.x < W && static_cast<int>(threadIdx.x) != rank) {
    const int q = threadIdx.x;
    Signal<W>(peers, q, rank, epoch);
    while (LoadAcquire(flags + q) < epoch) {
    }
  }
  __syncthreads();
  if (threadIdx.x == 0) epochs[blockIdx.x] = epoch;

  const T* src[W];
#pragma unroll
  for (int q = 0; q < W; ++q) src[q] = reinterpret_cast<const T*>(peers.base[q] + data);
  for (int64_t g = start; g < groups; g += stride) {
    Vec<T, N> v[W];
#pragma unroll
    for (int q = 0; q < W; ++q) v[q] = LoadGroup<T, N>(src[q], g, n, true);  // all loads in flight first
    float acc[N];
#pragma unroll
    for (int j = 0; j < N; ++j) acc[j] = ToFloat(v[0].v[j]);
#pragma unroll
    for (int q = 1; q < W; ++q) {
#pragma unroll
      for (int j = 0; j < N; ++j) acc[j] += ToFloat(v[q].v[j]);  // rank order: identical on every rank
    }
    Vec<T, N> r;
#pragma unroll
    for (int j = 0; j < N; ++j) r.v[j] = FromFloat<T>(acc[j]);
    StoreGroup<T, N>(out, g, n, out_aligned, r);
  }
}

template <typename T>
cudaError_t LaunchTyped(const Peers& peers, int rank, int size, int blocks, size_t half, const void* in, void* out,
                        int64_t n, cudaStream_t stream) {
  const T* src = static_cast<const T*>(in);
  T* dst = static_cast<T*>(out);
  switch (size) {
#define CHAI_ONE_SHOT_CASE(W)                                                                                  \
  case W:                                                                                                      \
    OneShotAllReduce<T, W><<<blocks, kThreads, 0, stream>>>(peers, peers.base[rank], rank, half, src, dst, n); \
    break;
    CHAI_ONE_SHOT_CASE(2)
    CHAI_ONE_SHOT_CASE(3)
    CHAI_ONE_SHOT_CASE(4)
    CHAI_ONE_SHOT_CASE(5)
    CHAI_ONE_SHOT_CASE(6)
    CHAI_ONE_SHOT_CASE(7)
    CHAI_ONE_SHOT_CASE(8)
#undef CHAI_ONE_SHOT_CASE
    default: return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

}  // namespace

cudaError_t LaunchOneShotAllReduce(const Peers& peers, int rank, int size, int blocks, size_t half, const void* in,
                                   void* out, int64_t count, DType dtype, cudaStream_t stream) {
  if (blocks < 1 || blocks > kMaxBlocks || rank < 0 || rank >= size) return cudaErrorInvalidValue;
  switch (dtype) {
    case DType::kF32: return LaunchTyped<float>(peers, rank, size, blocks, half, in, out, count, stream);
    case DType::kF16: return LaunchTyped<__half>(peers, rank, size, blocks, half, in, out, count, stream);
    case DType::kBF16: return LaunchTyped<__nv_bfloat16>(peers, rank, size, blocks, half, in, out, count, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace chai::ipc
