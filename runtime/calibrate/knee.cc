#include "runtime/calibrate/knee.h"

#include <algorithm>

namespace chai {

int KneeOfCurve(const std::vector<double>& curve) {
  const int n = static_cast<int>(curve.size());
  if (n <= 1) return 1;
  const auto [lo, hi] = std::minmax_element(curve.begin(), curve.end());
  const double range = *hi - *lo;
  if (!(range > 0)) return *hi == 0 ? 1 : n;
  const double y0 = (curve.front() - *lo) / range, y1 = (curve.back() - *lo) / range;
  // Below the chord by (chord(x) - y); all points share the chord's slope, so comparing the
  // vertical gap ranks the perpendicular distances the same way.
  int best_k = n;
  double best_gap = 1e-12;  // a point must lie strictly below the chord
  for (int k = 1; k <= n; ++k) {
    const double x = static_cast<double>(k - 1) / (n - 1);
    const double y = (curve[k - 1] - *lo) / range;
    const double gap = (y0 + (y1 - y0) * x) - y;
    if (gap > best_gap) {
      best_gap = gap;
      best_k = k;
    }
  }
  return best_k;
}

}  // namespace chai
