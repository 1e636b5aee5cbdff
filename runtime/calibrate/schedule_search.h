// The perplexity-budgeted schedule search: starting dense, take layers from the most to the
// least redundant and lower each one's cluster count as far as the schedule stays within
// `budget_percent` of dense perplexity on the search windows. Layers lowered earlier stay
// lowered, so every accepted schedule (and the result) is within the budget as a whole.
//
// Acceptance is conservative, because the budget must hold on text the search never saw. With
// paired per-window differences x_w = (nll_chai_w - nll_dense_w) / tokens_w over the S search
// windows, a schedule passes when
//   exp(mean + q * sd(x) * sqrt(1/S + 1/M)) <= 1 + budget/100,
// the upper prediction bound for the mean increase over M fresh (held-out) windows: both the
// search's and the held-out windows' sampling noise are allowed for (M = 0: a confidence bound
// for the mean itself, sqrt(1/S)). q is the one-sided 95% Student-t quantile with S - 1 degrees
// of freedom unless given. Windows disagree a lot on how much CHAI costs them (on opt-tiny-docs
// the spread of x is about its mean), so a search on the point estimate overshoots on fresh
// text. The point estimate is the token-weighted mean.
//
// Per layer the smallest passing k is found by galloping down from the current k (k - 1, k - 2,
// k - 4, ...) until a candidate fails, then bisecting between the last pass and that failure.
// A layer that cannot lose a single cluster, the common case in small models, costs one
// evaluation; about 2 log2(H) at most. This assumes perplexity does not improve when a layer
// loses clusters (true up to noise; a violation only makes the search stop at a larger k).
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

// One-sided 95% quantile of Student's t with `dof` degrees of freedom (1.645 for large dof).
double StudentT95(int dof);

// Upper bound of perplexity(candidate) / perplexity(dense) (see above) with factor q on the
// spread, for `fresh_windows` = M held-out windows.
double PerplexityRatioBound(const WindowScores& candidate, const WindowScores& dense, double q, int fresh_windows);

struct SearchBound {
  double q = -1;          // < 0: StudentT95(S - 1); 0: the point estimate alone
  int fresh_windows = 0;  // M
};

struct SearchTrial {
  std::vector<int> schedule;
  double perplexity = 0;
  double ratio_bound = 1;  // PerplexityRatioBound against dense
  bool accepted = false;
};

struct ScheduleSearchResult {
  std::vector<int> schedule;
  double dense_perplexity = 0;
  double perplexity = 0;            // of `schedule` on the search windows
  double ratio_bound = 1;           // of `schedule`
  std::vector<SearchTrial> trials;  // every evaluation, in order (the first is dense)
};

// `order`: layer indices, most redundant first (layers absent from it stay dense).
absl::StatusOr<ScheduleSearchResult> SearchSchedule(int num_layers, int heads, const std::vector<int>& order,
                                                    double budget_percent, const SearchBound& bound,
                                                    const ScheduleEvaluator& evaluate);

}  // namespace chai

#endif  // CHAI_RUNTIME_CALIBRATE_SCHEDULE_SEARCH_H_
