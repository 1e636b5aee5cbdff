// Device pieces of the flag-free (Lamport) all-reduce, shared by the plain kernel
// (ipc_allreduce_lamport.cu) and the one fused with the residual add and norm
// (ipc_allreduce_norm.cu): the sentinel, volatile 16-byte accesses and the receive poll.
// The protocol and its safety argument are in ipc_allreduce_lamport.cu. Internal to parallel/.
#ifndef CHAI_PARALLEL_IPC_LAMPORT_CUH_
#define CHAI_PARALLEL_IPC_LAMPORT_CUH_

#include <cstdint>

#include "kernels/cuda/cuda_utils.cuh"

namespace chai::ipc {

using cuda::Vec;

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

// Waits until the 16-byte group at `slot` (local memory, written by a peer) holds no sentinel in
// its first `valid` elements, stores the sentinel back (clean for the peer's call e + 2) and
// returns the group.
template <typename T, int N>
__device__ __forceinline__ Vec<T, N> ReceiveGroup(char* slot, int valid) {
  uint4 bits;
  bool waiting = true;
  while (waiting) {
    bits = LoadVolatile(slot);
    waiting = false;
#pragma unroll
    for (int j = 0; j < N; ++j) waiting |= j < valid && IsSentinel<T>(Bits<T>(bits, j));
  }
  StoreVolatile(slot, make_uint4(kSentinelWord, kSentinelWord, kSentinelWord, kSentinelWord));
  return FromBits<T, N>(bits);
}

}  // namespace chai::ipc

#endif  // CHAI_PARALLEL_IPC_LAMPORT_CUH_
