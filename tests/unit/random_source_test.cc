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

// Drawn straight in half precision (how weights are loaded for fp16/bf16), a slice holds the
// bits that casting its fp32 draw gives; integer dtypes are refused.
TEST(RandomSource, HalfPrecisionSlicesEqualTheCastFp32Slice) {
  auto source = MakeRandomSource(11);
  const std::vector<int64_t> shape = {29, 41};
  const Ranges rows = {{2, 9}, {20, 29}}, cols = {{5, 30}, {0, 3}};
  auto fp32 = source->GetSlice("model.layers.1.self_attn.o_proj.weight", shape, rows, cols);
  ASSERT_TRUE(fp32.ok());
  for (DType dtype : {DType::kF16, DType::kBF16}) {
    auto half = source->GetSlice("model.layers.1.self_attn.o_proj.weight", shape, rows, cols, dtype);
    ASSERT_TRUE(half.ok()) << half.status();
    const Tensor cast = fp32->Cast(dtype);
    ASSERT_EQ(half->dtype(), dtype);
    ASSERT_EQ(half->shape(), cast.shape());
    EXPECT_EQ(std::memcmp(half->raw(), cast.raw(), cast.nbytes()), 0) << DTypeName(dtype);
  }
  auto norm = source->GetSlice("model.norm.weight", {8}, {}, {}, DType::kBF16);
  ASSERT_TRUE(norm.ok());
  EXPECT_EQ(std::memcmp(norm->raw(), Tensor::FromFloats(std::vector<float>(8, 1.f), {8}).Cast(DType::kBF16).raw(), 16),
            0);
  EXPECT_FALSE(source->GetSlice("model.norm.weight", {8}, {}, {}, DType::kI32).ok());
}

TEST(RandomSource, ColumnSliceNeedsTwoDimensions) {
  auto source = MakeRandomSource(1);
  EXPECT_FALSE(source->GetSlice("x.weight", {4, 2, 2}, {}, {{0, 1}}).ok());
}

}  // namespace
}  // namespace chai
