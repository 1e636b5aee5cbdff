// Weight bytes to fetch into L2 ahead of the kernel that streams them: a hint that a latency-bound
// kernel of a decode step (attention, a norm) carries for the GEMV after it.
//
// Why: at batch 1 a decode step is a chain of weight-streaming GEMVs and small kernels between
// them. While attention or a norm runs (9 and 3 us a layer on an H100 at 512 positions) DRAM is
// mostly idle. Fetching the bytes the next GEMV will read first into L2 in that time moves them off
// the step's critical path: that GEMV finds them in L2 and streams only the rest from DRAM.
// ops::LinearReadsFirst says which bytes those are for a given GEMV (it knows the GEMV's grid);
// the kernels that take the hint issue one L2 bulk prefetch per range (sm_90; a no-op elsewhere
// and on the CPU, which ignores the hint). Weights are never written while steps run, so the
// prefetch may run at any time in the step (before a PDL wait too) and never changes a result.
// An earlier form, a prefetch kernel on a side stream forked in the recorded graph (removed in
// f4d5a8d, llama-7b-tp1-h200.md "Weights prefetched into L2 between GEMVs"), was slower in every
// variant: the GEMV waited for the join, or the branch cost more than it saved. Here no kernel and
// no graph branch is added; the kernels that already run issue the prefetches.
#ifndef CHAI_KERNELS_L2_PREFETCH_H_
#define CHAI_KERNELS_L2_PREFETCH_H_

#include <cstdint>

namespace chai {

// The ranges base[set] + i * outer_stride + j * inner_stride, `bytes` long, for set < 2 (the
// second only where base2 is set), i < outer, j < inner. Addresses and bytes are multiples of 16.
// base == nullptr: nothing to fetch.
struct L2Prefetch {
  const void* base = nullptr;
  const void* base2 = nullptr;  // a second set of the same shape (the up half of a gate | up weight)
  int64_t outer = 0, outer_stride = 0;
  int64_t inner = 1, inner_stride = 0;
  int64_t bytes = 0;

  bool empty() const { return base == nullptr || outer <= 0 || inner <= 0 || bytes <= 0; }
  int64_t ranges() const { return empty() ? 0 : (base2 != nullptr ? 2 : 1) * outer * inner; }
  int64_t total_bytes() const { return ranges() * bytes; }
};

// Which first bytes a hint takes for a GEMV whose grid fits one wave (ops::LinearReadsFirst; a
// grid of several waves always takes a prefix of its first wave's rows):
// - kHeads (the default): the head of every (row, split) span, which every CTA reads first;
// - kAlternate: every other CTA iteration of each row (an experiment's pattern; no gain measured);
// - kRows: a prefix of W's rows as for several waves, so that the CTAs owning those rows stream
//   from L2 and finish early (an experiment: on an H100 the prefix form gained 3% of LLaMA-7B's
//   batch-1 step where the heads of a one-wave Q|K|V gained 0.5%, llama-7b-tp1-h100.md; at TP = 4,
//   where all of LLaMA-7B's hinted GEMVs are one wave, 1.806 against 1.787 ms on 4 x H200 with the
//   heads: no gain, opt-66b-tp4-h200.md).
enum class L2HintForm { kHeads, kAlternate, kRows };

}  // namespace chai

#endif  // CHAI_KERNELS_L2_PREFETCH_H_
