// The words of the flag-free (Lamport) all-reduce that a producer writing into its receive slots
// needs too (the decode GEMV's mirror, kernels/peer_mirror.h): the sentinel the slots hold between
// calls, the replacement that keeps a message element from looking like it, and the volatile
// 16-byte store. The protocol itself is in parallel/ipc_allreduce_lamport.cu, which uses these.
#ifndef CHAI_KERNELS_CUDA_LAMPORT_WORDS_CUH_
#define CHAI_KERNELS_CUDA_LAMPORT_WORDS_CUH_

#include <cstdint>

namespace chai::cuda::lamport {

// The receive area's fill: as 16-bit halves, negative zero (0x8000) twice; as fp32, a subnormal.
constexpr uint32_t kSentinelWord = 0x80008000u;

__device__ __forceinline__ void StoreVolatile(void* p, uint4 v) {
  asm volatile("st.volatile.global.v4.u32 [%0], {%1, %2, %3, %4};" ::"l"(p), "r"(v.x), "r"(v.y), "r"(v.z), "r"(v.w)
               : "memory");
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

}  // namespace chai::cuda::lamport

#endif  // CHAI_KERNELS_CUDA_LAMPORT_WORDS_CUH_
