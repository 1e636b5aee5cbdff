// ops::LinearReadsFirst on CUDA: which weight bytes a decode GEMV streams first, from the grid it
// will launch (gemv_plan.h), for the L2 prefetch hint of the kernel before it (kernels/l2_prefetch.h).
#include <algorithm>
#include <cstdint>

#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/gemv_plan.h"
#include "kernels/cuda/internal.h"

namespace chai::cuda {

// The first bytes of W that the decode GEMV of x * weight^T streams (ops::LinearReadsFirst), from
// its grid (PlanGrid with the configuration it will launch). Two cases:
// - more CTAs than fit the chip at once (the wide Q|K|V, gate | up and LM head weights): the first
//   wave's row blocks are streamed whole before the rest start, so the first bytes are a prefix of
//   W's rows (of each half for the SiLU epilogue's gate | up; the Q|K|V epilogue's head halves take
//   whole heads in order, a prefix too), cut into 32 KB ranges;
// - one wave (o and down at N = 4096): every CTA streams its rows' K span from the start, so the
//   first bytes are the head of every (row, split) span; with `alternate` (one split, rows of two
//   CTA iterations or more, and a budget of an iteration a row at least) every other CTA iteration
//   of each row instead (ranges of one iteration's bytes, every second one).
// The configuration is the plain Linear's for kStore (QkvLinearAppend and the fused kStore launch
// LinearFused's, the same unless CHAI_GEMV_VARIANT forces one without fusions: a speed hint only).
L2Prefetch GemvReadsFirst(const Tensor& x, const Tensor& weight, ops::LinearOutput output, int64_t budget,
                          bool alternate) {
  L2Prefetch p;
  if (budget < 16 || weight.rank() != 2 || x.rank() != 2 || !GemvApplies(x, weight)) return p;
  if (!CopyEngineDevice()) return p;  // no bulk prefetch to issue it with
  const int64_t tokens = x.dim(0), k = x.dim(1), n = weight.dim(0);
  if (tokens == 0 || n == 0) return p;
  const GemvShape v = GemvLaunchShape(tokens, k, n, output != ops::LinearOutput::kStore);
  const bool paired = output == ops::LinearOutput::kSiluMul;
  const GemvGrid g = PlanGrid(n, k, paired, v.r, v.u, v.warps, v.min_blocks);
  const int64_t row_bytes = k * 2;  // fp16 / bf16 (GemvApplies)
  const char* w = static_cast<const char*>(weight.raw());
  const int64_t resident = int64_t{SmCount()} * v.min_blocks;
  if (g.row_blocks * g.splits > resident) {
    constexpr int64_t kRange = 32 << 10;
    const int64_t set_rows = paired ? n / 2 : n;
    const int64_t wave_rows = resident * (paired ? 8 : 16) * v.r;
    const int64_t bytes = std::min({budget / (paired ? 2 : 1), wave_rows * row_bytes, set_rows * row_bytes});
    p.base = w;
    p.base2 = paired ? w + set_rows * row_bytes : nullptr;
    p.outer = bytes / kRange;
    p.outer_stride = kRange;
    p.bytes = kRange;
  } else {
    const int64_t span = g.split_chunks * 16;
    const int64_t last_span = row_bytes - (g.splits - 1) * span;  // the shortest
    p.base = w;
    p.outer = n;
    p.outer_stride = row_bytes;
    const int64_t iteration = int64_t{4} * v.u * v.warps * 16;
    // (Alternate needs one iteration of every row at least; below, the heads.)
    if (alternate && g.splits == 1 && span >= 2 * iteration && budget >= n * iteration) {
      p.inner = std::min((span / iteration + 1) / 2, budget / (n * iteration));
      p.inner_stride = 2 * iteration;
      p.bytes = iteration;
    } else {
      p.inner = g.splits;
      p.inner_stride = span;
      p.bytes = std::min(last_span, budget / (n * g.splits)) / 16 * 16;
    }
  }
  if (p.empty()) return L2Prefetch{};
  return p;
}

}  // namespace chai::cuda
