// Which bytes of W a decode GEMV streams first, from its grid alone: the arithmetic behind
// ops::LinearReadsFirst (kernels/cuda/gemv_reads_first.cc adds the device checks and the launch
// configuration), free of CUDA so that the CPU tests check it.
#ifndef CHAI_KERNELS_GEMV_READS_FIRST_PLAN_H_
#define CHAI_KERNELS_GEMV_READS_FIRST_PLAN_H_

#include <cstdint>

#include "kernels/gemv_grid.h"
#include "kernels/l2_prefetch.h"

namespace chai::gemv_grid {

// The first bytes, up to `budget`, that configuration `c` streams of the fp16 / bf16 weight `w`
// [n, k] (paired: the SiLU epilogue's gate | up halves) on `sms` SMs at c.min_blocks CTAs each.
// Two forms:
// - more CTAs than fit the chip at once (the wide Q|K|V, gate | up and LM head weights): the first
//   wave's row blocks are streamed whole before the rest start, so the first bytes are a prefix of
//   W's rows (of each half for gate | up; the Q|K|V epilogue's head halves take whole heads in
//   order, a prefix too), cut into 32 KB ranges. On an H100 this form, issued by the norm before
//   LLaMA-7B's Q|K|V, gains 3% of the batch-1 step (benchmarks/results/llama-7b-tp1-h100.md);
// - one wave (o and down at N = 4096): every CTA streams its rows' K span from the start, so the
//   first bytes are the head of every (row, split) span; with kAlternate (one split, rows of two
//   CTA iterations or more, and a budget of an iteration a row at least) every other CTA iteration
//   of each row instead (ranges of one iteration's bytes, every second one); with kRows a prefix
//   of rows as above. The heads are many small ranges (4096-12288 of them at LLaMA-7B's shapes):
//   the same 6 MB as 512-byte heads of Q|K|V's rows gained only 0.5% there.
// (The forms as one_wave names them: L2HintForm, kernels/l2_prefetch.h.) Empty when the budget is
// under 16 bytes.
L2Prefetch ReadsFirst(const void* w, int64_t n, int64_t k, bool paired, const Config& c, int sms, int64_t budget,
                      L2HintForm one_wave);

}  // namespace chai::gemv_grid

#endif  // CHAI_KERNELS_GEMV_READS_FIRST_PLAN_H_
