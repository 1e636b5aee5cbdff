// Hopper (sm_90) mbarrier and bulk-copy (cp.async.bulk) primitives: a thread arms an mbarrier with
// the bytes it expects, the copy engine moves global memory into shared memory and completes the
// transaction on that mbarrier, and waiting threads spin on the phase parity. Shared-memory
// operands are 32-bit shared addresses (SharedAddress). Used by decode kernel 4
// (paged_attention_decode_v4.cuh).
#ifndef CHAI_KERNELS_CUDA_BULK_COPY_CUH_
#define CHAI_KERNELS_CUDA_BULK_COPY_CUH_

#include <cstdint>

namespace chai::cuda {

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
__device__ __forceinline__ void MbarInit(uint32_t bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
// Makes the initialised mbarriers visible to the other threads and to the copy engine.
__device__ __forceinline__ void MbarInitFence() { asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory"); }
// This thread's arrival (the only one expected per phase), announcing `bytes` of copies.
__device__ __forceinline__ void MbarArriveExpectTx(uint32_t bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}
// Waits until the phase of parity `parity` has completed (acquire: the copies' bytes are visible).
__device__ __forceinline__ void MbarWait(uint32_t bar, uint32_t parity) {
  uint32_t done = 0;
  do {
    asm volatile(
        "{\n"
        ".reg .pred p;\n"
        "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
        "selp.u32 %0, 1, 0, p;\n"
        "}\n"
        : "=r"(done)
        : "r"(bar), "r"(parity)
        : "memory");
  } while (done == 0);
}
// `bytes` (a multiple of 16, both addresses 16-byte aligned) global -> shared by the copy engine;
// completion is counted on `bar`.
__device__ __forceinline__ void BulkCopyG2S(uint32_t dst, const void* src, uint32_t bytes, uint32_t bar) {
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(dst),
               "l"(src), "r"(bytes), "r"(bar)
               : "memory");
}
// An arrival on `bar` (counted in its init count: .noinc) once every cp.async (non-bulk) this
// thread issued before has landed, so that waiting threads see those bytes too.
__device__ __forceinline__ void CpAsyncMbarArrive(uint32_t bar) {
  asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(bar) : "memory");
}
// Orders this thread's ordinary shared-memory stores before later copy-engine accesses.
__device__ __forceinline__ void FenceProxyAsyncShared() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }
#endif  // __CUDA_ARCH__ >= 900

}  // namespace chai::cuda

#endif  // CHAI_KERNELS_CUDA_BULK_COPY_CUH_
