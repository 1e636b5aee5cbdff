// Programmatic Dependent Launch in kernels and launches (see pdl.h for what it does and the
// CHAI_PDL switch).
//
// The contract for every kernel launched through LaunchPdl: call PdlWait() before the first
// global-memory read of anything an earlier kernel wrote and before the first global-memory
// write (an earlier kernel may still read that memory). Our kernels call it as their first
// statement, with one exception: decode kernel 4's CHAI P·V pass, whose predecessor (the scores
// pass) releases it only after its own PdlWait, reads memory older kernels wrote (V rows, block
// tables, the CHAI map) before its wait and only the scores pass's logits after it. The only work allowed before it is work that depends on nothing the stream
// produces, such as L2 prefetches of weights (never written while steps run). When a kernel was
// launched without the attribute (PDL off, or a plain <<<>>> launch), PdlWait returns at once.
//
// That pair is also the exception to everything below: the scores pass releases its P·V pass
// right after its own wait, and the P·V pass is launched with the attribute whatever CHAI_PDL says
// (PdlReleaseDependents, LaunchMaybePdl; paged_attention_decode_v4.cuh), so a captured decode graph
// holds that one programmatic edge per CHAI layer even with PDL off (CHAI_DECODE_V4_PV_EARLY=0
// removes it).
// Otherwise no kernel triggers its dependents early (griddepcontrol.launch_dependents). Releasing the next
// grid right after each kernel's wait was measured on an H200 (LLaMA-7B fp16, prompt 512,
// benchmarks/results/llama-7b-tp1-h200.md): TPOT 1.4% (batch 1) and 2.2% (batch 8) longer than
// with PDL off, and with whole first weight groups prefetched before the waits 13-15% longer.
// With each GEMV's first weight group loaded into registers before its wait (so that the first
// DRAM round trip overlaps the previous kernel's tail), batch 1 was 4.226 / 4.230 ms against
// 4.233 / 4.222 ms with PDL off: no gain, and the experiment was removed. (Without a trigger a grid
// releases its dependents only as it completes, so that preload overlapped little.) Late triggers
// were measured too (692c64e, on an H200): griddepcontrol.launch_dependents in the GEMV after its
// weight stream, in decode kernel 4 after its K/V stream and in the norm after its wait made
// LLaMA-7B batch 1 4.117 / 4.109 ms against 4.073 / 4.073 with PDL off (batch 8 4.831 / 4.868
// against 4.788 / 4.773); removed.
#ifndef CHAI_KERNELS_CUDA_PDL_CUH_
#define CHAI_KERNELS_CUDA_PDL_CUH_

#include <cuda_runtime.h>

#include <utility>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/pdl.h"

namespace chai::cuda {

// Waits until the grids this one depends on have completed and their writes are visible
// (griddepcontrol.wait, sm_90+); a no-op on older architectures, which never get the attribute.
__device__ __forceinline__ void PdlWait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// Releases the grid launched after this one (with the attribute) before this grid completes:
// once every CTA of this grid has executed it (or exited), the dependent grid may become resident
// and run the work before its PdlWait. Only decode kernel 4's scores pass calls it, after its own
// PdlWait, so that everything before it in the stream has completed when its dependent starts
// (see the header comment for why no other kernel does).
__device__ __forceinline__ void PdlReleaseDependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// A hint for the work allowed before PdlWait: fetch the 128-byte line holding p into L2 (only
// memory nothing in the stream writes, such as weights).
__device__ __forceinline__ void PrefetchL2(const void* p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("prefetch.global.L2 [%0];" ::"l"(p));
#endif
}

// kernel<<<grid, block, shared, stream>>>(args...), with the programmatic-serialization
// attribute when `programmatic`; checks the launch either way. The kernel must honour the
// PdlWait contract above. Arguments are converted to the kernel's parameter types here, as a
// <<<>>> launch would.
template <typename... Params, typename... Args>
void LaunchMaybePdl(bool programmatic, void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared,
                    cudaStream_t stream, Args&&... args) {
  if (!programmatic) {
    kernel<<<grid, block, shared, stream>>>(std::forward<Args>(args)...);
    CHAI_CUDA_CHECK_LAUNCH();
    return;
  }
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t config = {};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = shared;
  config.stream = stream;
  config.attrs = attr;
  config.numAttrs = 1;
  CHAI_CUDA_CHECK(cudaLaunchKernelEx(&config, kernel, static_cast<Params>(std::forward<Args>(args))...));
}

// LaunchMaybePdl with the attribute when PdlEnabled() (CHAI_PDL=1 on sm_90+).
template <typename... Params, typename... Args>
void LaunchPdl(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared, cudaStream_t stream, Args&&... args) {
  LaunchMaybePdl(PdlEnabled(), kernel, grid, block, shared, stream, std::forward<Args>(args)...);
}

}  // namespace chai::cuda

#endif  // CHAI_KERNELS_CUDA_PDL_CUH_
