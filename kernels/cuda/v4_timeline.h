// Diagnostics for decode kernel 4's passes (dense, CHAI scores, CHAI P·V): per-CTA timestamps, recorded only by builds with
// -DCHAI_V4_TIMELINE=1 (`attention_bench --timeline FILE` writes them out). Why: at short contexts
// a dense CTA of ours takes ~3.8 us longer than cuDNN's for the same 512 KB on the same grid
// (benchmarks/results/attention-decode-h200.md, thirty-second session); this says where in a CTA's
// life that time goes. Off (a null buffer) by default, and every other build ignores it.
#ifndef CHAI_KERNELS_CUDA_V4_TIMELINE_H_
#define CHAI_KERNELS_CUDA_V4_TIMELINE_H_

#include <cstdint>

namespace chai::cuda {

// The buffer holds three regions of max_ctas / 3 CTAs, one per pass (paged::V4Pass: dense, scores,
// P·V). Words per CTA (CTA id = blockIdx.y * gridDim.x + blockIdx.x), as V4Timeline in the kernel
// writes them: the SM id, %globaltimer (ns) at entry and at exit, then %clock64 at entry, after the
// barriers' set-up (and PdlWait), once the sequence's length was read (the item's bounds), after
// the barrier that follows the first loads (score heads, Q, block ids), after the first stages'
// copies were issued, when the first stage had landed, after the last stage and at exit, and (the
// scores pass) after the search for its items. A scores CTA with several items keeps its last
// item's marks. The clocks are the SM's own (compare them within a CTA); the global timer orders CTAs.
constexpr int kV4TimelineWords = 12;
enum V4TimelineWord : int {
  kTlSm = 0,
  kTlEntryNs,
  kTlExitNs,
  kTlEntry,
  kTlInit,
  kTlBounds,
  kTlBarrier,
  kTlIssued,
  kTlFirst,
  kTlLoopEnd,
  kTlExit,
  kTlItems,
};

// Whether this build records timelines (compiled with CHAI_V4_TIMELINE=1).
bool V4TimelineBuilt();
// The device buffer of max_ctas x kV4TimelineWords words the next kernel-4 launches write (CTAs
// past a region's max_ctas / 3 write nothing); null turns it off.
void SetV4Timeline(unsigned long long* device_words, int max_ctas);

}  // namespace chai::cuda

#endif  // CHAI_KERNELS_CUDA_V4_TIMELINE_H_
