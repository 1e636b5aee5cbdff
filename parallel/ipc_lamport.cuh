// Device pieces of the flag-free (Lamport) all-reduce, shared by the plain kernel
// (ipc_allreduce_lamport.cu) and the one fused with the residual add and norm
// (ipc_allreduce_norm.cu): volatile 16-byte loads, element access and the receive poll (the sentinel,
// its replacement and the volatile store are in kernels/cuda/lamport_words.cuh, shared with the
// decode GEMV's mirror).
// The protocol and its safety argument are in ipc_allreduce_lamport.cu. Internal to parallel/.
#ifndef CHAI_PARALLEL_IPC_LAMPORT_CUH_
#define CHAI_PARALLEL_IPC_LAMPORT_CUH_

#include <cstdint>

#include "kernels/cuda/cuda_utils.cuh"
#include "kernels/cuda/lamport_words.cuh"

namespace chai::ipc {

using cuda::Vec;

using cuda::lamport::kSentinelWord;
using cuda::lamport::NotSentinel;
using cuda::lamport::StoreVolatile;

__device__ __forceinline__ uint4 LoadVolatile(const void* p) {
  uint4 v;
  asm volatile("ld.volatile.global.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p)
               : "memory");
  return v;
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
