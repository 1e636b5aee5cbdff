#include "runtime/calibrate/schedule_search.h"

#include <cmath>
#include <map>

#include "absl/strings/str_cat.h"

namespace chai {

double WindowScores::Perplexity() const {
  double nll_sum = 0, token_sum = 0;
  for (size_t w = 0; w < nll.size(); ++w) {
    nll_sum += nll[w];
    token_sum += static_cast<double>(tokens[w]);
  }
  return token_sum > 0 ? std::exp(nll_sum / token_sum) : 1.0;
}

double PerplexityRatioBound(const WindowScores& candidate, const WindowScores& dense, double z) {
  const size_t n = candidate.nll.size();
  double diff_sum = 0, token_sum = 0, mean = 0;
  std::vector<double> x(n);
  for (size_t w = 0; w < n; ++w) {
    diff_sum += candidate.nll[w] - dense.nll[w];
    token_sum += static_cast<double>(candidate.tokens[w]);
    x[w] = (candidate.nll[w] - dense.nll[w]) / static_cast<double>(candidate.tokens[w]);
    mean += x[w] / static_cast<double>(n);
  }
  double var = 0;
  for (double v : x) var += (v - mean) * (v - mean);
  const double se = n > 1 ? std::sqrt(var / static_cast<double>(n - 1) / static_cast<double>(n)) : 0.0;
  return std::exp(diff_sum / token_sum + z * se);
}

absl::StatusOr<ScheduleSearchResult> SearchSchedule(int num_layers, int heads, const std::vector<int>& order,
                                                    double budget_percent, double z,
                                                    const ScheduleEvaluator& evaluate) {
  ScheduleSearchResult result;
  const double limit = 1.0 + budget_percent / 100.0;
  std::vector<int> schedule(num_layers, heads);
  auto dense = evaluate(schedule);
  if (!dense.ok()) return dense.status();
  if (dense->nll.empty()) return absl::InvalidArgumentError("no search windows");
  result.dense_perplexity = result.perplexity = dense->Perplexity();
  result.trials.push_back({schedule, result.perplexity, 1.0, true});

  std::map<std::vector<int>, size_t> seen;  // schedule -> trial
  auto passes = [&](const std::vector<int>& candidate) -> absl::StatusOr<bool> {
    auto it = seen.find(candidate);
    if (it == seen.end()) {
      auto scores = evaluate(candidate);
      if (!scores.ok()) return scores.status();
      if (scores->nll.size() != dense->nll.size()) return absl::InternalError("search windows changed");
      const double bound = PerplexityRatioBound(*scores, *dense, z);
      result.trials.push_back({candidate, scores->Perplexity(), bound, bound <= limit});
      it = seen.emplace(candidate, result.trials.size() - 1).first;
    }
    return result.trials[it->second].accepted;
  };

  for (int layer : order) {
    // Invariant: k = hi passes (the current schedule); find the smallest passing k in [lo, hi].
    int lo = 1, hi = schedule[layer];
    while (lo < hi) {
      const int mid = lo + (hi - lo) / 2;
      std::vector<int> candidate = schedule;
      candidate[layer] = mid;
      auto ok = passes(candidate);
      if (!ok.ok()) return ok.status();
      if (*ok) {
        hi = mid;
      } else {
        lo = mid + 1;
      }
    }
    schedule[layer] = hi;
  }
  result.schedule = schedule;
  if (auto it = seen.find(schedule); it != seen.end()) {
    result.perplexity = result.trials[it->second].perplexity;
    result.ratio_bound = result.trials[it->second].ratio_bound;
  }
  return result;
}

}  // namespace chai
