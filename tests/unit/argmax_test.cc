// Greedy argmax against a plain scan (the first index of the largest value, NaN never chosen, 0
// for a row of NaN) on random rows of every length mod 8 with ties, -inf and NaN entries: the
// host Argmax, the greedy sampler, and the CPU ArgmaxRows op on fp32/fp16/bf16 rows wider than
// the vocabulary they are asked about.
#include "kernels/ops.h"
#include "runtime/sampler.h"

#include <cmath>
#include <tuple>
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

// Rows of `width` values with few distinct values (ties), some -inf and NaN.
std::vector<float> RandomRow(std::mt19937& rng, int width) {
  std::vector<float> x(width);
  for (float& v : x) {
    const int r = static_cast<int>(rng() % 40);
    v = r == 0 ? -INFINITY : (r == 1 ? NAN : static_cast<float>(rng() % 16) - 8.f);
  }
  return x;
}

TEST(Argmax, RowsOpMatchesScanInEveryDtype) {
  std::mt19937 rng(11);
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16}) {
    for (auto [rows, cols, width] : {std::tuple<int, int, int>{1, 1, 1}, {3, 17, 24}, {5, 32000, 32000}, {2, 31999, 32064}}) {
      std::vector<float> values;
      for (int r = 0; r < rows; ++r) {
        std::vector<float> row = RandomRow(rng, width);
        if (r == 1) std::fill(row.begin(), row.end(), NAN);
        if (r == 2) row[width - 1] = 1000.f;  // beyond cols: padding that must not win
        values.insert(values.end(), row.begin(), row.end());
      }
      Tensor x = Tensor::Empty({rows, width}, dtype);
      ConvertFloats(values.data(), DType::kF32, x.raw(), dtype, values.size());
      // The reference reads the values as the dtype holds them (fp16/bf16 rounding makes ties).
      std::vector<float> held(values.size());
      ConvertFloats(x.raw(), dtype, held.data(), DType::kF32, held.size());
      Tensor ids = Tensor::Empty({rows}, DType::kI32);
      ops::ArgmaxRows(x, cols, &ids);
      for (int r = 0; r < rows; ++r) {
        const std::vector<float> row(held.begin() + int64_t{r} * width, held.begin() + int64_t{r} * width + cols);
        EXPECT_EQ(ids.data<int32_t>()[r], ScanArgmax(row)) << DTypeName(dtype) << " row " << r << " cols " << cols;
      }
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
