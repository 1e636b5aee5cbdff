#include "runtime/calibrate/schedule_search.h"

#include <algorithm>
#include <cmath>
#include <iterator>
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

double StudentT95(int dof) {
  // Exact to the 3 decimals of the usual tables; linear in 1/dof between entries.
  static constexpr struct {
    int dof;
    double q;
  } kTable[] = {{1, 6.314}, {2, 2.920},  {3, 2.353},  {4, 2.132},  {5, 2.015},  {6, 1.943},  {7, 1.895},  {8, 1.860},
                {9, 1.833}, {10, 1.812}, {12, 1.782}, {15, 1.753}, {20, 1.725}, {30, 1.697}, {60, 1.671}, {120, 1.658}};
  if (dof < 1) return kTable[0].q;
  for (size_t i = 0; i + 1 < std::size(kTable); ++i) {
    if (dof == kTable[i].dof) return kTable[i].q;
    if (dof < kTable[i + 1].dof) {
      const double t = (1.0 / kTable[i].dof - 1.0 / dof) / (1.0 / kTable[i].dof - 1.0 / kTable[i + 1].dof);
      return kTable[i].q + t * (kTable[i + 1].q - kTable[i].q);
    }
  }
  return 1.645 + (1.658 - 1.645) * (120.0 / dof);  // toward the normal quantile, 1.645
}

double PerplexityRatioBound(const WindowScores& candidate, const WindowScores& dense, double q, int fresh_windows) {
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
  const double sd = n > 1 ? std::sqrt(var / static_cast<double>(n - 1)) : 0.0;
  const double scale = std::sqrt(1.0 / static_cast<double>(n) + (fresh_windows > 0 ? 1.0 / fresh_windows : 0.0));
  return std::exp(diff_sum / token_sum + q * sd * scale);
}

absl::StatusOr<ScheduleSearchResult> SearchSchedule(int num_layers, int heads, const std::vector<int>& order,
                                                    double budget_percent, const SearchBound& bound,
                                                    const ScheduleEvaluator& evaluate) {
  ScheduleSearchResult result;
  const double limit = 1.0 + budget_percent / 100.0;
  std::vector<int> schedule(num_layers, heads);
  auto dense = evaluate(schedule);
  if (!dense.ok()) return dense.status();
  if (dense->nll.empty()) return absl::InvalidArgumentError("no search windows");
  result.dense_perplexity = result.perplexity = dense->Perplexity();
  result.trials.push_back({schedule, result.perplexity, 1.0, true});
  const int windows = static_cast<int>(dense->nll.size());
  const double q = bound.q >= 0 ? bound.q : StudentT95(windows - 1);

  std::map<std::vector<int>, size_t> seen;  // schedule -> trial
  auto passes = [&](const std::vector<int>& candidate) -> absl::StatusOr<bool> {
    auto it = seen.find(candidate);
    if (it == seen.end()) {
      auto scores = evaluate(candidate);
      if (!scores.ok()) return scores.status();
      if (scores->nll.size() != dense->nll.size()) return absl::InternalError("search windows changed");
      const double ratio = PerplexityRatioBound(*scores, *dense, q, bound.fresh_windows);
      result.trials.push_back({candidate, scores->Perplexity(), ratio, ratio <= limit});
      it = seen.emplace(candidate, result.trials.size() - 1).first;
    }
    return result.trials[it->second].accepted;
  };

  for (int layer : order) {
    // Gallop down: k_pass passes (the current schedule does); stop at the first failure.
    int k_pass = schedule[layer], k_fail = 0;
    for (int step = 1; k_pass > 1; step *= 2) {
      std::vector<int> candidate = schedule;
      candidate[layer] = std::max(1, k_pass - step);
      auto ok = passes(candidate);
      if (!ok.ok()) return ok.status();
      if (!*ok) {
        k_fail = candidate[layer];
        break;
      }
      k_pass = candidate[layer];
    }
    // Bisect (k_fail, k_pass]: the smallest passing k.
    int lo = k_fail + 1, hi = k_pass;
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
