// The one-shot all-reduce kernels. Pull (the default): copy in, one round of flags per block,
// sum every rank's copy read over NVLink. Push (the latency variant, further down): write the
// input into every peer's receive slot, one flag per rank pair, sum the local slots.
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
#include "parallel/ipc_allreduce_groups.cuh"
#include "parallel/ipc_allreduce_kernel.h"

namespace chai::ipc {
namespace {

using cuda::kVec16;
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

// Tells rank q that this rank reached `epoch` (push kernel: flag row 0, one slot per rank).
template <int W>
__device__ __forceinline__ void Signal0(const Peers& peers, int q, int rank, uint64_t epoch) {
#pragma unroll
  for (int p = 0; p < W; ++p) {
    if (p != q) continue;
    StoreRelease(reinterpret_cast<uint64_t*>(peers.base[p] + kFlagsOffset) + rank, epoch);
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
    StoreGroup<T, N>(out, g, n, out_aligned, RankOrderSum<T, N, W>(v));
  }
}

// ---- push: one flag round per call --------------------------------------------------------
//
// Rank r's call with epoch e (e = epochs[0] + 1 on every rank: all ranks make the same calls)
// uses half p = e & 1 of every receive area:
//  1. Every block writes its groups of `in` into slot r of half p on every peer (plain 16-byte
//     stores, posted over NVLink; nothing is read remotely). Its own slot is not written: the
//     sum below reads this rank's part straight from `in` (the same thread reads and writes
//     group g, so in == out is fine).
//  2. Blocks arrive at a counter in local memory: thread 0 of each block, after __syncthreads
//     (which orders the block's stores before it), issues a system-scope fence and adds 1. The
//     counter grows by exactly gridDim.x per call and calls on a stream never overlap, so the
//     block that brings it to a multiple of gridDim.x is the last of this call. It fences again
//     (so every block's pushes, ordered before their arrivals, come before what follows), stores
//     epochs[0] = e (every block read the old value before it arrived) and, after a barrier,
//     threads q < W store e into flag slot [0][r] of peer q with st.release.sys. That is W - 1
//     remote flag stores per rank per call, whatever the grid, instead of blocks * (W - 1).
//  3. Every block polls its own flag slots [0][q] (local memory) with ld.acquire.sys until each
//     is >= e, then sums slot 0..W-1 (this rank's from `in`) in rank order, like the pull kernel.
//     When slot q shows >= e, rank q's last block released after all of rank q's pushes of call
//     e, so all of half p's slot q is written, whichever block of rank q wrote which group: the
//     grid need not even match across ranks for correctness (it does anyway, by the vote).
//
// Why a rank one call ahead cannot overwrite what a slow peer still reads: rank r writes slot r
// of half p on peer q in calls e and e + 2 only. Its call e + 2 starts after its call e + 1
// finished, and every block of call e + 1 waited for q's flag >= e + 1; q stores that flag in
// its call e + 1, which begins only after q's call e (all its reads of half p) completed. So
// the writes of call e + 2 come after q's reads of call e. A peer at most one call ahead
// (e + 1) writes the other half, and its flag e + 1 (hence ">= e") also covers its pushes of
// call e, which precede it in that peer's program order. Nothing here depends on host-side
// state, so graph replays (and eager calls between them) keep every rank's epoch in step.
template <typename T, int W>
__global__ void __launch_bounds__(kThreads)
    PushAllReduce(Peers peers, char* self, int rank, size_t half, const T* in, T* out, int64_t n) {
  constexpr int N = kVec16<T>;
  uint64_t* const flags = reinterpret_cast<uint64_t*>(self + kFlagsOffset);  // row 0: slot q from rank q
  uint64_t* const epochs = reinterpret_cast<uint64_t*>(self + kEpochsOffset);
  unsigned long long* const arrived = reinterpret_cast<unsigned long long*>(epochs + 1);
  __shared__ bool last;
  // Read by every thread before the block arrives; the last block to arrive writes it back.
  const uint64_t epoch = epochs[0] + 1;
  const size_t data = kDataOffset + (epoch & 1) * W * half;
  const int64_t groups = (n + N - 1) / N;
  const int64_t stride = int64_t{gridDim.x} * blockDim.x;
  const int64_t start = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  const bool in_aligned = reinterpret_cast<uintptr_t>(in) % 16 == 0;
  const bool out_aligned = reinterpret_cast<uintptr_t>(out) % 16 == 0;

  T* dst[W];  // slot `rank` of half p on every rank (own entry unused)
#pragma unroll
  for (int q = 0; q < W; ++q) dst[q] = reinterpret_cast<T*>(peers.base[q] + data + rank * half);
  for (int64_t g = start; g < groups; g += stride) {
    const Vec<T, N> v = LoadGroup<T, N>(in, g, n, in_aligned);
#pragma unroll
    for (int q = 0; q < W; ++q) {
      if (q != rank) StoreGroup<T, N>(dst[q], g, n, true, v);
    }
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    __threadfence_system();  // this block's pushes (ordered before by the barrier) before its arrival
    bool is_last = true;
    if (gridDim.x > 1) is_last = (atomicAdd(arrived, 1ull) + 1) % gridDim.x == 0;
    if (is_last) {
      __threadfence_system();  // every block's arrival (and so its pushes) before the flags
      epochs[0] = epoch;
    }
    last = is_last;
  }
  __syncthreads();
  if (last && threadIdx.x < W && static_cast<int>(threadIdx.x) != rank) {
    Signal0<W>(peers, threadIdx.x, rank, epoch);
  }
  if (threadIdx.x < W && static_cast<int>(threadIdx.x) != rank) {
    while (LoadAcquire(flags + threadIdx.x) < epoch) {
    }
  }
  __syncthreads();

  const T* src[W];
#pragma unroll
  for (int q = 0; q < W; ++q) src[q] = reinterpret_cast<const T*>(self + data + q * half);
  for (int64_t g = start; g < groups; g += stride) {
    Vec<T, N> v[W];
#pragma unroll
    for (int q = 0; q < W; ++q) {
      v[q] = q == rank ? LoadGroup<T, N>(in, g, n, in_aligned) : LoadGroup<T, N>(src[q], g, n, true);
    }
    StoreGroup<T, N>(out, g, n, out_aligned, RankOrderSum<T, N, W>(v));
  }
}

template <typename T>
cudaError_t LaunchTyped(bool push, const Peers& peers, int rank, int size, int blocks, size_t half, const void* in,
                        void* out, int64_t n, cudaStream_t stream) {
  const T* src = static_cast<const T*>(in);
  T* dst = static_cast<T*>(out);
  switch (size) {
#define CHAI_ONE_SHOT_CASE(W)                                                                                  \
  case W:                                                                                                      \
    if (push) {                                                                                                \
      PushAllReduce<T, W><<<blocks, kThreads, 0, stream>>>(peers, peers.base[rank], rank, half, src, dst, n);  \
    } else {                                                                                                   \
      OneShotAllReduce<T, W><<<blocks, kThreads, 0, stream>>>(peers, peers.base[rank], rank, half, src, dst, n); \
    }                                                                                                          \
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

namespace {

cudaError_t Launch(bool push, const Peers& peers, int rank, int size, int blocks, size_t half, const void* in,
                   void* out, int64_t count, DType dtype, cudaStream_t stream) {
  if (blocks < 1 || blocks > kMaxBlocks || rank < 0 || rank >= size) return cudaErrorInvalidValue;
  switch (dtype) {
    case DType::kF32: return LaunchTyped<float>(push, peers, rank, size, blocks, half, in, out, count, stream);
    case DType::kF16: return LaunchTyped<__half>(push, peers, rank, size, blocks, half, in, out, count, stream);
    case DType::kBF16:
      return LaunchTyped<__nv_bfloat16>(push, peers, rank, size, blocks, half, in, out, count, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace

cudaError_t LaunchOneShotAllReduce(const Peers& peers, int rank, int size, int blocks, size_t half, const void* in,
                                   void* out, int64_t count, DType dtype, cudaStream_t stream) {
  return Launch(false, peers, rank, size, blocks, half, in, out, count, dtype, stream);
}

cudaError_t LaunchPushAllReduce(const Peers& peers, int rank, int size, int blocks, size_t half, const void* in,
                                void* out, int64_t count, DType dtype, cudaStream_t stream) {
  return Launch(true, peers, rank, size, blocks, half, in, out, count, dtype, stream);
}

}  // namespace chai::ipc
