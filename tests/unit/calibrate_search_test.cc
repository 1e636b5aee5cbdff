// The budgeted schedule search against synthetic perplexity models, where the best schedule
// is known, and the confidence bound it accepts by.
#include <cmath>

#include "gtest/gtest.h"
#include "runtime/calibrate/schedule_search.h"

namespace chai {
namespace {

// Every window's per-token nll rises by sum over layers of cost[l] * (H - k_l), plus
// window-specific noise `jitter[w] * that rise` (so windows disagree when jitter differs).
ScheduleEvaluator Synthetic(int heads, std::vector<double> cost, std::vector<double> jitter, int* calls) {
  return [=](const std::vector<int>& schedule) -> absl::StatusOr<WindowScores> {
    ++*calls;
    double rise = 0;
    for (size_t l = 0; l < schedule.size(); ++l) rise += cost[l] * (heads - schedule[l]);
    WindowScores s;
    for (double j : jitter) {
      s.nll.push_back(100.0 * (2.0 + rise * (1.0 + j)));
      s.tokens.push_back(100);
    }
    return s;
  };
}

TEST(ScheduleSearch, LowersCheapLayersFirstWithinBudget) {
  int calls = 0;
  // Layer 2 is free, layer 1 cheap, layer 0 expensive. Budget 5%: log(1.05) = 0.0488 nats.
  auto eval = Synthetic(8, {0.1, 0.004, 0.0}, {0.0, 0.0}, &calls);
  auto r = SearchSchedule(3, 8, {2, 1, 0}, 5.0, {0.0, 0}, eval);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->schedule[2], 1);  // free: all the way down
  // Layer 1 alone: 0.004 * (8 - k) <= 0.0488 -> 8 - k <= 12: k = 1 as well.
  EXPECT_EQ(r->schedule[1], 1);
  // Left: 0.0488 - 0.028 = 0.0208 -> layer 0 can drop 0 heads (one costs 0.1).
  EXPECT_EQ(r->schedule[0], 8);
  EXPECT_LE(r->perplexity, r->dense_perplexity * 1.05);
  EXPECT_NEAR(r->dense_perplexity, std::exp(2.0), 1e-12);
  EXPECT_EQ(static_cast<int>(r->trials.size()), calls);  // each schedule evaluated once
  // Galloping: each free layer tries 7, 5, 1 (steps 1, 2, 4); the expensive one fails at 7.
  EXPECT_EQ(calls, 1 + 3 + 3 + 1);
  for (const SearchTrial& t : r->trials) EXPECT_EQ(t.accepted, t.ratio_bound <= 1.05 + 1e-15);
}

TEST(ScheduleSearch, GallopThenBisect) {
  int calls = 0;
  // 5% budget: (8 - k) * 0.0097 <= 0.04879 holds for k >= 3. Tries 7, 5 (pass), 1 (fail), 3, 2.
  auto eval = Synthetic(8, {0.0097}, {0.0}, &calls);
  auto r = SearchSchedule(1, 8, {0}, 5.0, {0.0, 0}, eval);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->schedule[0], 3);
  EXPECT_EQ(calls, 1 + 5);
  EXPECT_EQ(r->trials.back().schedule[0], 2);
  EXPECT_FALSE(r->trials.back().accepted);
}

TEST(ScheduleSearch, ZeroBudgetKeepsCostlyLayersDense) {
  int calls = 0;
  auto eval = Synthetic(4, {0.01, 0.02}, {0.0}, &calls);
  auto r = SearchSchedule(2, 4, {0, 1}, 0.0, {0.0, 0}, eval);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->schedule, (std::vector<int>{4, 4}));
}

TEST(ScheduleSearch, ConfidenceBoundIsStricterWhenWindowsDisagree) {
  int calls = 0;
  // Same mean rise, but windows disagree: +-80% around it.
  auto noisy = Synthetic(8, {0.0, 0.006}, {-0.8, 0.8, -0.8, 0.8}, &calls);
  auto plain = SearchSchedule(2, 8, {1, 0}, 3.0, {0.0, 0}, noisy);
  auto careful = SearchSchedule(2, 8, {1, 0}, 3.0, {}, noisy);     // Student t, S = 4
  auto fresh = SearchSchedule(2, 8, {1, 0}, 3.0, {-1, 8}, noisy);  // and 8 fresh windows
  ASSERT_TRUE(plain.ok() && careful.ok() && fresh.ok());
  EXPECT_GT(careful->schedule[1], plain->schedule[1]);
  EXPECT_GE(fresh->schedule[1], careful->schedule[1]);
  EXPECT_LE(careful->ratio_bound, 1.03);
  EXPECT_LE(fresh->ratio_bound, 1.03);
}

TEST(ScheduleSearch, RatioBound) {
  WindowScores dense{{100, 100}, {50, 50}}, chai{{110, 100}, {50, 50}};
  // Per-token differences 0.2 and 0: mean 0.1, sd 0.1414, se 0.1.
  EXPECT_NEAR(PerplexityRatioBound(chai, dense, 0.0, 0), std::exp(0.1), 1e-12);
  EXPECT_NEAR(PerplexityRatioBound(chai, dense, 2.0, 0), std::exp(0.3), 1e-12);
  // Predicting the mean of 2 fresh windows: sd * sqrt(1/2 + 1/2) = 0.1414.
  EXPECT_NEAR(PerplexityRatioBound(chai, dense, 1.0, 2), std::exp(0.1 + std::sqrt(0.02)), 1e-12);
  WindowScores one_dense{{100}, {50}}, one{{110}, {50}};
  EXPECT_NEAR(PerplexityRatioBound(one, one_dense, 2.0, 0), std::exp(0.2), 1e-12);  // no spread from one window
}

TEST(ScheduleSearch, StudentT95) {
  EXPECT_DOUBLE_EQ(StudentT95(1), 6.314);
  EXPECT_DOUBLE_EQ(StudentT95(7), 1.895);
  EXPECT_GT(StudentT95(11), 1.782);
  EXPECT_LT(StudentT95(11), 1.812);
  EXPECT_NEAR(StudentT95(100000), 1.645, 1e-4);
  for (int dof = 1; dof < 200; ++dof) EXPECT_GE(StudentT95(dof), StudentT95(dof + 1)) << dof;
}

TEST(ScheduleSearch, EvaluatorErrorsPropagate) {
  ScheduleEvaluator failing = [](const std::vector<int>&) -> absl::StatusOr<WindowScores> {
    return absl::ResourceExhaustedError("KV cache full");
  };
  auto r = SearchSchedule(2, 4, {0, 1}, 5.0, {}, failing);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "KV cache full");
}

}  // namespace
}  // namespace chai
