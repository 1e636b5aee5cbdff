// The flag-free one-shot all-reduce (CHAI_IPC_ALLREDUCE_ALGO=lamport): the data is its own flag.
//
// Every receive slot holds a sentinel value that no message element can have (negative zero in
// fp16/bf16, the 32-bit pattern 0x80008000 in fp32) whenever no message is in it. Rank r's call
// with epoch e (per block, as in the pull kernel: the grid is fixed, so every block of every rank
// counts the same calls) uses half p = e & 1 of the receive area:
//  1. Every block writes its groups of `in` into slot r of half p on every peer (posted 16-byte
//     NVLink stores; an element equal to the sentinel is sent as the nearest other value, see
//     NotSentinel). Its own slot is not written: the sum reads this rank's part from `in`.
//  2. The same thread then polls its groups of slot q of half p in local memory (volatile loads,
//     so every poll reaches L2, where the peers' stores land) until no element of the group is
//     the sentinel, sums slots 0..W-1 in rank order (like the other kernels) and stores the
//     sentinel back into the groups it read.
// No flag, no fence, no barrier: one posted write from each peer, seen as soon as it lands.
// An element is stored whole (16-byte stores never tear below 2 bytes), so a group without a
// sentinel holds exactly what the peer sent, whichever of its bytes arrived first.
//
// Why a peer cannot overwrite a slot before this rank has read and reset it: rank q writes slot q
// of half p here in calls e and e + 2 only. Its call e + 2 starts after its call e + 1 ended,
// which needed this rank's data of call e + 1, written by this rank's call e + 1, which started
// after its call e (the reads and resets of half p) had completed. Kernel completion makes those
// resets visible before anything this rank does afterwards. So two halves suffice, and nothing
// depends on host state: graph replays keep every rank in step.
#include <cstdint>

#include "kernels/cuda/cuda_utils.cuh"
#include "parallel/ipc_allreduce_groups.cuh"
#include "parallel/ipc_allreduce_kernel.h"

namespace chai::ipc {
namespace {

using cuda::kVec16;

// The receive area's fill: as 16-bit halves, negative zero (0x8000) twice; as fp32, a subnormal.
constexpr uint32_t kSentinelWord = 0x80008000u;

__device__ __forceinline__ uint4 LoadVolatile(const void* p) {
  uint4 v;
  asm volatile("ld.volatile.global.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p)
               : "memory");
  return v;
}

__device__ __forceinline__ void StoreVolatile(void* p, uint4 v) {
  asm volatile("st.volatile.global.v4.u32 [%0], {%1, %2, %3, %4};" ::"l"(p), "r"(v.x), "r"(v.y), "r"(v.z), "r"(v.w)
               : "memory");
}

// Element j of a 16-byte group as raw bits, for a T of 2 or 4 bytes.
template <typename T>
__device__ __forceinline__ uint32_t Bits(const uint4& g, int j) {
  const int word = sizeof(T) == 4 ? j : j >> 1;
  const uint32_t w = word == 0 ? g.x : word == 1 ? g.y : word == 2 ? g.z : g.w;
  if constexpr (sizeof(T) == 4) return w;
  return (w >> (16 * (j & 1))) & 0xffffu;
}

template <typename T>
__device__ __forceinline__ bool IsSentinel(uint32_t bits) {
  return sizeof(T) == 4 ? bits == kSentinelWord : bits == 0x8000u;
}

// The group with every sentinel element replaced: fp16/bf16 negative zero becomes positive zero
// (the same value), fp32 0x80008000 (-5.9e-39) becomes negative zero. Every rank sums the
// replaced values, its own included, so all ranks still get the same bits.
template <typename T>
__device__ __forceinline__ uint4 NotSentinel(uint4 g) {
  uint32_t w[4] = {g.x, g.y, g.z, g.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    if constexpr (sizeof(T) == 4) {
      if (w[i] == kSentinelWord) w[i] = 0x80000000u;
    } else {
      if ((w[i] & 0xffffu) == 0x8000u) w[i] &= 0xffff0000u;
      if ((w[i] >> 16) == 0x8000u) w[i] &= 0x0000ffffu;
    }
  }
  return make_uint4(w[0], w[1], w[2], w[3]);
}

// One 16-byte group seen as raw words or as N elements (a union keeps it in registers, where a
// reinterpret_cast of a local would put it on the stack).
template <typename T, int N>
union Group {
  uint4 bits;
  Vec<T, N> vec;
};

template <typename T, int N>
__device__ __forceinline__ uint4 AsBits(const Vec<T, N>& v) {
  Group<T, N> g;
  g.vec = v;
  return g.bits;
}

template <typename T, int N>
__device__ __forceinline__ Vec<T, N> FromBits(const uint4& bits) {
  Group<T, N> g;
  g.bits = bits;
  return g.vec;
}

template <typename T, int W>
__global__ void __launch_bounds__(kThreads)
    LamportAllReduce(Peers peers, char* self, int rank, size_t half, const T* in, T* out, int64_t n) {
  constexpr int N = kVec16<T>;
  static_assert(sizeof(Vec<T, N>) == 16, "one group is one 16-byte access");
  __shared__ uint64_t block_epoch;
  if (threadIdx.x == 0) {
    uint64_t* const epochs = reinterpret_cast<uint64_t*>(self + kEpochsOffset);
    block_epoch = epochs[blockIdx.x] + 1;
    epochs[blockIdx.x] = block_epoch;  // read by no one else; the next call of this block is stream-ordered
  }
  __syncthreads();
  const size_t data = kDataOffset + (block_epoch & 1) * W * half;
  const int64_t groups = (n + N - 1) / N;
  const int64_t stride = int64_t{gridDim.x} * blockDim.x;
  const int64_t start = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  const bool in_aligned = reinterpret_cast<uintptr_t>(in) % 16 == 0;
  const bool out_aligned = reinterpret_cast<uintptr_t>(out) % 16 == 0;

  char* dst[W];  // slot `rank` of half p on every rank (own entry unused)
#pragma unroll
  for (int q = 0; q < W; ++q) dst[q] = peers.base[q] + data + rank * half;
  for (int64_t g = start; g < groups; g += stride) {
    // Missing elements of a partial last group travel as zeros; the receiver ignores them.
    const uint4 v = NotSentinel<T>(AsBits<T, N>(LoadGroup<T, N>(in, g, n, in_aligned)));
#pragma unroll
    for (int q = 0; q < W; ++q) {
      if (q != rank) StoreVolatile(dst[q] + g * 16, v);
    }
  }

  const uint4 sentinel = make_uint4(kSentinelWord, kSentinelWord, kSentinelWord, kSentinelWord);
  for (int64_t g = start; g < groups; g += stride) {
    const int valid = static_cast<int>(n - g * N < N ? n - g * N : N);
    Vec<T, N> v[W];
#pragma unroll
    for (int q = 0; q < W; ++q) {
      if (q == rank) {
        v[q] = FromBits<T, N>(NotSentinel<T>(AsBits<T, N>(LoadGroup<T, N>(in, g, n, in_aligned))));
        continue;
      }
      char* const slot = self + data + q * half + g * 16;
      uint4 bits;
      bool waiting = true;
      while (waiting) {
        bits = LoadVolatile(slot);
        waiting = false;
#pragma unroll
        for (int j = 0; j < N; ++j) waiting |= j < valid && IsSentinel<T>(Bits<T>(bits, j));
      }
      StoreVolatile(slot, sentinel);  // clean for call e + 2 of rank q
      v[q] = FromBits<T, N>(bits);
    }
    StoreGroup<T, N>(out, g, n, out_aligned, RankOrderSum<T, N, W>(v));
  }
}

}  // namespace

cudaError_t LaunchLamportAllReduce(const Peers& peers, int rank, int size, int blocks, size_t half, const void* in,
                                   void* out, int64_t count, DType dtype, cudaStream_t stream) {
  if (blocks < 1 || blocks > kMaxBlocks || rank < 0 || rank >= size) return cudaErrorInvalidValue;
  auto launch = [&](auto tag) -> cudaError_t {
    using T = decltype(tag);
    const T* src = static_cast<const T*>(in);
    T* dst = static_cast<T*>(out);
    switch (size) {
#define CHAI_LAMPORT_CASE(W)                                                                                   \
  case W:                                                                                                      \
    LamportAllReduce<T, W><<<blocks, kThreads, 0, stream>>>(peers, peers.base[rank], rank, half, src, dst, count); \
    break;
      CHAI_LAMPORT_CASE(2)
      CHAI_LAMPORT_CASE(3)
      CHAI_LAMPORT_CASE(4)
      CHAI_LAMPORT_CASE(5)
      CHAI_LAMPORT_CASE(6)
      CHAI_LAMPORT_CASE(7)
      CHAI_LAMPORT_CASE(8)
#undef CHAI_LAMPORT_CASE
      default: return cudaErrorInvalidValue;
    }
    return cudaGetLastError();
  };
  switch (dtype) {
    case DType::kF32: return launch(float{});
    case DType::kF16: return launch(__half{});
    case DType::kBF16: return launch(__nv_bfloat16{});
    default: return cudaErrorInvalidValue;
  }
}

namespace {

__global__ void FillWords(uint32_t* p, size_t words, uint32_t value) {
  for (size_t i = size_t{blockIdx.x} * blockDim.x + threadIdx.x; i < words; i += size_t{gridDim.x} * blockDim.x) {
    p[i] = value;
  }
}

}  // namespace

cudaError_t FillLamportReceiveArea(void* allocation, size_t bytes, cudaStream_t stream) {
  if (bytes < kDataOffset || (bytes - kDataOffset) % 4 != 0) return cudaErrorInvalidValue;
  const size_t words = (bytes - kDataOffset) / 4;
  FillWords<<<256, 256, 0, stream>>>(reinterpret_cast<uint32_t*>(static_cast<char*>(allocation) + kDataOffset), words,
                                     kSentinelWord);
  return cudaGetLastError();
}

}  // namespace chai::ipc
