// Random weights: a slice drawn alone (what a tensor-parallel rank asks for) equals the same
// slice of the full tensor, value for value; the checkpoint source's default slicing agrees.
#include <cstring>

#include "gtest/gtest.h"
#include "runtime/tensor_source.h"

namespace chai {
namespace {

void ExpectSame(const Tensor& a, const Tensor& b) {
  ASSERT_EQ(a.shape(), b.shape());
  ASSERT_EQ(a.dtype(), DType::kF32);
  EXPECT_EQ(std::memcmp(a.raw(), b.raw(), a.nbytes()), 0);
}

TEST(RandomSource, SliceEqualsSliceOfFull) {
  auto source = MakeRandomSource(7);
  const std::vector<int64_t> shape = {37, 53};
  auto full = source->Get("model.layers.0.mlp.up_proj.weight", shape);
  ASSERT_TRUE(full.ok());
  const std::vector<std::pair<Ranges, Ranges>> cases = {
      {{{3, 9}}, {}},                     // rows only
      {{}, {{10, 20}}},                   // columns only (a row-parallel weight)
      {{{0, 5}, {30, 37}}, {{0, 1}, {52, 53}}},  // several blocks, first and last column
      {{{36, 37}}, {{17, 53}, {0, 17}}},  // blocks out of order
  };
  for (const auto& [rows, cols] : cases) {
    auto alone = source->GetSlice("model.layers.0.mlp.up_proj.weight", shape, rows, cols);
    ASSERT_TRUE(alone.ok()) << alone.status();
    Tensor expected = *full;
    if (!rows.empty()) expected = GatherRows(expected, rows);
    if (!cols.empty()) expected = GatherCols(expected, cols);
    ExpectSame(*alone, expected);
  }
}

TEST(RandomSource, NormsBiasesAndVectors) {
  auto source = MakeRandomSource(3);
  auto norm = source->GetSlice("model.norm.weight", {16}, {{4, 8}}, {});
  ASSERT_TRUE(norm.ok());
  for (int i = 0; i < 4; ++i) EXPECT_EQ(norm->data<float>()[i], 1.f);
  auto bias = source->Get("model.decoder.layers.0.fc1.bias", {64});
  auto part = source->GetSlice("model.decoder.layers.0.fc1.bias", {64}, {{16, 48}}, {});
  ASSERT_TRUE(bias.ok() && part.ok());
  ExpectSame(*part, bias->Rows(16, 48));
  for (int i = 0; i < 64; ++i) EXPECT_LE(std::abs(bias->data<float>()[i]), 0.01f);
}

TEST(RandomSource, ColumnSliceNeedsTwoDimensions) {
  auto source = MakeRandomSource(1);
  EXPECT_FALSE(source->GetSlice("x.weight", {4, 2, 2}, {}, {{0, 1}}).ok());
}

}  // namespace
}  // namespace chai
