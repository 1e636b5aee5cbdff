// The perplexity-budgeted schedule search: starting dense, take layers from the most to the
// least redundant and lower each one's cluster count as far as the schedule stays within
// `budget_percent` of dense perplexity on the search windows. Layers lowered earlier stay
// lowered, so every accepted schedule (and the result) is within the budget as a whole.
//
// Acceptance is conservative, because the budget must also hold on text the search never saw:
// with paired per-window differences x_w = (nll_chai_w - nll_dense_w) / tokens_w, a schedule
// passes when exp(mean_x + z * sd(x) / sqrt(windows)) <= 1 + budget/100, i.e. when the
// one-sided upper confidence bound of its perplexity ratio is within budget (z = 1.645: 95%).
// z = 0 accepts on the point estimate alone. The point estimate uses the token-weighted mean.
//
// Per layer the smallest passing k is found by bisection over [1, k_current], which assumes
// perplexity does not improve when a layer loses clusters (true up to noise; a violation only
// makes the search stop at a larger k than possible). About log2(H) evaluations a layer.
// Greedy and myopic by design: the first layers may spend most of the budget.
#ifndef CHAI_RUNTIME_CALIBRATE_SCHEDULE_SEARCH_H_
#define CHAI_RUNTIME_CALIBRATE_SCHEDULE_SEARCH_H_

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/statusor.h"

namespace chai {

// Summed negative log-likelihood and scored tokens of each search window, for one schedule.
struct WindowScores {
  std::vector<double> nll;
  std::vector<int64_t> tokens;

  double Perplexity() const;
};

using ScheduleEvaluator = std::function<absl::StatusOr<WindowScores>(const std::vector<int>& layer_clusters)>;

// Upper confidence bound of perplexity(candidate) / perplexity(dense), see above.
double PerplexityRatioBound(const WindowScores& candidate, const WindowScores& dense, double z);

struct SearchTrial {
  std::vector<int> schedule;
  double perplexity = 0;
  double ratio_bound = 1;  // PerplexityRatioBound against dense
  bool accepted = false;
};

struct ScheduleSearchResult {
  std::vector<int> schedule;
  double dense_perplexity = 0;
  double perplexity = 0;   // of `schedule` on the search windows
  double ratio_bound = 1;  // of `schedule`
  std::vector<SearchTrial> trials;  // every evaluation, in order (the first is dense)
};

// `order`: layer indices, most redundant first (layers absent from it stay dense).
absl::StatusOr<ScheduleSearchResult> SearchSchedule(int num_layers, int heads, const std::vector<int>& order,
                                                    double budget_percent, double z,
                                                    const ScheduleEvaluator& evaluate);

}  // namespace chai

#endif  // CHAI_RUNTIME_CALIBRATE_SCHEDULE_SEARCH_H_
