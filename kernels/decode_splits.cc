#include "kernels/decode_splits.h"

#include <algorithm>

namespace chai::decode_splits {

Split Best(int64_t max_len, int64_t busy, int64_t resident, int64_t cap) {
  const auto ceil_div = [](int64_t a, int64_t b) { return (a + b - 1) / b; };
  max_len = std::max<int64_t>(max_len, 1);
  busy = std::max<int64_t>(busy, 1);
  resident = std::max<int64_t>(resident, 1);
  int64_t max_s = std::min(ceil_div(max_len, kChunkAlign), std::max<int64_t>(1, ceil_div(16 * resident, busy)));
  if (cap > 0) max_s = std::min(max_s, cap);
  Split best;
  int64_t best_cost = -1;
  for (int64_t s = 1; s <= max_s; ++s) {
    const int64_t chunk = ceil_div(ceil_div(max_len, s), kChunkAlign) * kChunkAlign;
    const int64_t splits = ceil_div(max_len, chunk);
    const int64_t cost = ceil_div(busy * splits, resident) * (chunk + kCtaCost);
    if (best_cost < 0 || cost < best_cost) {
      best_cost = cost;
      best = Split{static_cast<int>(chunk), static_cast<int>(splits)};
    }
  }
  return best;
}

}  // namespace chai::decode_splits
