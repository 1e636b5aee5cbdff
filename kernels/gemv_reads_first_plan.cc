// Which bytes of W a decode GEMV streams first (gemv_reads_first_plan.h).
#include "kernels/gemv_reads_first_plan.h"

#include <algorithm>

namespace chai::gemv_grid {
namespace {

constexpr int64_t kPrefixRange = 32 << 10;  // bytes per range of the prefix form

// A prefix of W's rows (of each half when paired), the first wave's rows at most.
L2Prefetch RowsPrefix(const char* w, int64_t n, int64_t row_bytes, bool paired, const Config& c, int64_t resident,
                      int64_t budget) {
  L2Prefetch p;
  const int64_t set_rows = paired ? n / 2 : n;
  const int64_t wave_rows = resident * (paired ? 8 : 16) * c.r;
  const int64_t bytes = std::min({budget / (paired ? 2 : 1), wave_rows * row_bytes, set_rows * row_bytes});
  p.base = w;
  p.base2 = paired ? w + set_rows * row_bytes : nullptr;
  p.outer = bytes / kPrefixRange;
  p.outer_stride = kPrefixRange;
  p.bytes = kPrefixRange;
  return p;
}

// The head of every (row, split) span, or with `alternate` (L2HintForm::kAlternate) every other
// CTA iteration of each row.
L2Prefetch SpanHeads(const char* w, int64_t n, int64_t row_bytes, const Config& c, const Grid& g, int64_t budget,
                     bool alternate) {
  L2Prefetch p;
  const int64_t span = g.split_chunks * 16;
  const int64_t last_span = row_bytes - (g.splits - 1) * span;  // the shortest
  p.base = w;
  p.outer = n;
  p.outer_stride = row_bytes;
  const int64_t iteration = int64_t{4} * c.u * c.warps * 16;
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
  return p;
}

}  // namespace

L2Prefetch ReadsFirst(const void* w, int64_t n, int64_t k, bool paired, const Config& c, int sms, int64_t budget,
                      L2HintForm one_wave) {
  if (budget < 16 || n <= 0 || k <= 0) return L2Prefetch{};
  const Grid g = Plan(n, k, paired, c, sms);
  const int64_t row_bytes = k * 2;  // fp16 / bf16
  const char* bytes = static_cast<const char*>(w);
  const int64_t resident = int64_t{sms} * c.min_blocks;
  const bool prefix = g.row_blocks * g.splits > resident || one_wave == L2HintForm::kRows;
  const L2Prefetch p = prefix ? RowsPrefix(bytes, n, row_bytes, paired, c, resident, budget)
                              : SpanHeads(bytes, n, row_bytes, c, g, budget, one_wave == L2HintForm::kAlternate);
  return p.empty() ? L2Prefetch{} : p;
}

}  // namespace chai::gemv_grid
