// The decode GEMV's launch arithmetic (gemv_grid.h).
#include "kernels/gemv_grid.h"

#include <algorithm>

namespace chai::gemv_grid {

Grid Plan(int64_t n, int64_t k, bool paired, const Config& c, int sms) {
  Grid g;
  const int64_t per_block = paired ? 8 * c.r : 16 * c.r;
  g.row_blocks = ((paired ? n / 2 : n) + per_block - 1) / per_block;
  const int64_t chunks = k / 8;
  g.split_chunks = chunks;
  if (g.row_blocks < sms) {
    const int64_t by_k = chunks / (4 * c.u * c.warps);
    g.splits = std::max<int64_t>(1, std::min<int64_t>(int64_t{sms} * c.min_blocks / g.row_blocks, by_k));
  }
  if (g.splits > 1) {
    const int64_t group = 4 * c.u;
    g.split_chunks = (chunks + g.splits * group - 1) / (g.splits * group) * group;
    g.splits = (chunks + g.split_chunks - 1) / g.split_chunks;
  }
  return g;
}

double WarpBalance(const Config& c, const Grid& g) {
  const int64_t iterations = (g.split_chunks + 4 * c.u - 1) / (4 * c.u);
  const int64_t busiest = (iterations + c.warps - 1) / c.warps;
  if (busiest == 0) return 1.0;
  return static_cast<double>(iterations) / static_cast<double>(busiest * c.warps);
}

double LastWaveFill(const Config& c, const Grid& g, int sms) {
  const int64_t resident = int64_t{sms} * std::max(c.ctas_per_sm, 1);
  const int64_t ctas = g.row_blocks * g.splits;
  if (ctas <= resident || ctas % resident == 0) return 0.0;
  return static_cast<double>(ctas % resident) / static_cast<double>(resident);
}

bool ChooseWide(int64_t k, int64_t n, const Config& narrow, const Config& wide, int sms, bool by_width_only) {
  const bool by_width = n >= 8192;
  if (by_width_only) return by_width;
  const Grid narrow_grid = Plan(n, k, false, narrow, sms), wide_grid = Plan(n, k, false, wide, sms);
  if (by_width) {
    // Rows so short that the wide one leaves a CTA's warps at less than 2/3 of the busiest one's work.
    const double wide_balance = WarpBalance(wide, wide_grid);
    return !(wide_balance < 2.0 / 3.0 && WarpBalance(narrow, narrow_grid) > wide_balance);
  }
  // A narrow grid spilling a last wave of at most a tenth of the resident CTAs.
  const double narrow_fill = LastWaveFill(narrow, narrow_grid, sms);
  return narrow_fill > 0.0 && narrow_fill <= 0.1 && LastWaveFill(wide, wide_grid, sms) > narrow_fill;
}

bool FourWarpsShareBetter(int64_t k, int64_t n, const Config& chosen, const Config& four, int sms) {
  const double chosen_balance = WarpBalance(chosen, Plan(n, k, false, chosen, sms));
  return chosen_balance < 0.8 && WarpBalance(four, Plan(n, k, false, four, sms)) > chosen_balance;
}

bool WideTakesFourWarps(int64_t k, int64_t n, const Config& wide, const Config& four, int sms) {
  const auto fits_one_wave = [&](const Config& c) {
    const Grid g = Plan(n, k, false, c, sms);
    return g.row_blocks * g.splits <= int64_t{sms} * std::max(c.ctas_per_sm, 1);
  };
  return fits_one_wave(four) && !fits_one_wave(wide);
}

Pick ChooseDefault(int64_t k, int64_t n, const Config& narrow, const Config& wide, const Config& four, int sms,
                   const Rules& rules) {
  const bool take_wide = ChooseWide(k, n, narrow, wide, sms, rules.by_width_only);
  if (rules.by_width_only) return take_wide ? Pick::kWide : Pick::kNarrow;
  if (FourWarpsShareBetter(k, n, take_wide ? wide : narrow, four, sms)) return Pick::kFour;
  if (!take_wide) return Pick::kNarrow;
  const bool opted_in = rules.four_warps == FourWarpsRule::kAll ||
                        (rules.four_warps == FourWarpsRule::kUnhinted && !rules.first_bytes_in_l2);
  return opted_in && WideTakesFourWarps(k, n, wide, four, sms) ? Pick::kFour : Pick::kWide;
}

}  // namespace chai::gemv_grid
