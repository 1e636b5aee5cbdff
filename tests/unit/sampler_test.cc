// Argmax (greedy sampling) against a plain scan: the first index of the largest value, NaN never
// chosen, on random rows of every length mod 8, with ties, -inf and NaN entries; and the sampler
// in greedy mode returns it.
#include "runtime/sampler.h"

#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace chai {
namespace {

int32_t ScanArgmax(const std::vector<float>& x) {
  int32_t best = -1;
  for (size_t i = 0; i < x.size(); ++i)
    if (!std::isnan(x[i]) && (best < 0 || x[i] > x[best])) best = static_cast<int32_t>(i);
  return best < 0 ? 0 : best;
}

TEST(Argmax, MatchesScan) {
  std::mt19937 rng(5);
  for (int n : {1, 2, 7, 8, 9, 15, 16, 17, 100, 32000, 32003}) {
    for (int trial = 0; trial < 20; ++trial) {
      std::vector<float> x(n);
      // Few distinct values, so ties are common; some -inf and NaN.
      for (float& v : x) {
        const int r = static_cast<int>(rng() % 40);
        v = r == 0 ? -INFINITY : (r == 1 ? NAN : static_cast<float>(rng() % 16) - 8.f);
      }
      if (trial == 0) std::fill(x.begin(), x.end(), -INFINITY);
      if (trial == 1) std::fill(x.begin(), x.end(), NAN);
      if (trial == 2) x[n - 1] = 100.f;  // the winner in the unvectorised tail
      ASSERT_EQ(Argmax(x), ScanArgmax(x)) << "n " << n << " trial " << trial;
    }
  }
}

TEST(Argmax, GreedySamplerUsesIt) {
  std::vector<float> x = {0.f, 3.f, -1.f, 3.f, 2.f};
  Sampler greedy(SamplingParams{});
  EXPECT_EQ(greedy.Sample(x), 1);
}

}  // namespace
}  // namespace chai
