// The L2 prefetch hints of decode steps (kernels/l2_prefetch.h): ops::LinearReadsFirst's ranges
// stay inside the weight, within the budget, disjoint and 16-byte aligned, and are the bytes the
// decode GEMV streams first (a prefix of the rows where the GEMV runs in several waves, the head
// of every row where it runs in one); no hint on the CPU or where no GEMV applies. The add + norm
// kernels that carry a hint give the same bytes as without it. (Decode attention's hint:
// paged_attention_gpu_test's DecodeKernel4L2HintLeavesResultsUnchanged.)
#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/dtype.h"
#include "kernels/ops.h"
#include "tests/gpu/gpu_test_util.h"

namespace chai {
namespace {

using gpu_test::GpuTest;
using gpu_test::Poisoned;
using gpu_test::Random;

class L2PrefetchGpu : public GpuTest {};

// The hint's ranges as (offset from the weight's start, bytes), sorted.
std::vector<std::pair<int64_t, int64_t>> Ranges(const L2Prefetch& p, const Tensor& w) {
  std::vector<std::pair<int64_t, int64_t>> out;
  const char* base = static_cast<const char*>(w.raw());
  for (int set = 0; set < (p.base2 != nullptr ? 2 : 1); ++set) {
    const char* b = static_cast<const char*>(set == 0 ? p.base : p.base2);
    for (int64_t i = 0; i < p.outer; ++i) {
      for (int64_t j = 0; j < p.inner; ++j) out.emplace_back(b - base + i * p.outer_stride + j * p.inner_stride, p.bytes);
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Inside [0, w.nbytes()), aligned, disjoint, at most `budget` bytes in all.
void ExpectWellFormed(const L2Prefetch& p, const Tensor& w, int64_t budget) {
  ASSERT_FALSE(p.empty());
  const auto ranges = Ranges(p, w);
  int64_t total = 0, end = 0;
  for (const auto& [off, bytes] : ranges) {
    EXPECT_EQ(off % 16, 0);
    EXPECT_EQ(bytes % 16, 0);
    EXPECT_GE(off, end) << "ranges overlap";
    EXPECT_LE(off + bytes, static_cast<int64_t>(w.nbytes())) << "range past the weight";
    end = off + bytes;
    total += bytes;
  }
  EXPECT_LE(total, budget);
  EXPECT_EQ(total, p.total_bytes());
}

TEST_F(L2PrefetchGpu, ReadsFirstIsAPrefixOfRowsForGemvsOfSeveralWaves) {
  // LLaMA-7B's Q|K|V (12288 rows) and gate | up (2 x 11008, paired halves) at batch 1 and 8: more
  // row blocks than fit the chip at once.
  const int64_t k = 4096, row_bytes = k * 2;
  const auto x1 = Random({1, k}, DType::kF16), x8 = Random({8, k}, DType::kF16);
  // The weights' values do not matter to the plan.
  const Tensor qkv = Tensor::Empty({12288, k}, DType::kF16, Device::kCuda);
  const Tensor gate_up = Tensor::Empty({22016, k}, DType::kF16, Device::kCuda);
  for (const Tensor* x : {&x1.dev, &x8.dev}) {
    const int64_t budget = 8 << 20;
    const L2Prefetch q = ops::LinearReadsFirst(*x, qkv, ops::LinearOutput::kStore, budget);
    ExpectWellFormed(q, qkv, budget);
    const auto qr = Ranges(q, qkv);
    EXPECT_EQ(qr.front().first, 0);
    for (size_t i = 1; i < qr.size(); ++i) EXPECT_EQ(qr[i].first, qr[i - 1].first + qr[i - 1].second) << "a gap";
    EXPECT_GT(q.total_bytes(), budget - (32 << 10));  // all of the budget, in 32 KB ranges

    const L2Prefetch g = ops::LinearReadsFirst(*x, gate_up, ops::LinearOutput::kSiluMul, budget);
    ExpectWellFormed(g, gate_up, budget);
    // Two prefixes: the gate rows' and the up rows' (from row 11008), half of the budget each.
    int64_t gate = 0, up = 0;
    for (const auto& [off, bytes] : Ranges(g, gate_up)) {
      if (off < 11008 * row_bytes) {
        EXPECT_EQ(off, gate);
        gate += bytes;
      } else {
        EXPECT_EQ(off, 11008 * row_bytes + up);
        up += bytes;
      }
    }
    EXPECT_EQ(gate, up);
    EXPECT_GT(gate, budget / 2 - (32 << 10));
  }
}

TEST_F(L2PrefetchGpu, ReadsFirstIsTheHeadOfEveryRowForGemvsOfOneWave) {
  // LLaMA-7B's o (4096 x 4096) and down (4096 x 11008) projections: one wave of CTAs, each
  // streaming its rows from the start.
  for (int64_t k : {int64_t{4096}, int64_t{11008}}) {
    const int64_t row_bytes = k * 2;
    const auto x = Random({1, k}, DType::kF16);
    const Tensor w = Tensor::Empty({4096, k}, DType::kF16, Device::kCuda);
    for (int64_t budget : {int64_t{1} << 20, int64_t{12} << 20}) {
      SCOPED_TRACE(::testing::Message() << "K=" << k << " budget=" << budget);
      const L2Prefetch p = ops::LinearReadsFirst(x.dev, w, ops::LinearOutput::kStore, budget);
      ExpectWellFormed(p, w, budget);
      EXPECT_EQ(p.inner, 1) << "no split of K expected at 4096 rows";
      for (const auto& [off, bytes] : Ranges(p, w)) EXPECT_EQ(off % row_bytes, 0) << "not a row's head";
      EXPECT_EQ(p.outer, 4096);
      EXPECT_GE(p.bytes, budget / 4096 - 16);
    }
    // Alternate: every other CTA iteration (2 KB here) of each row: two a row at 16 MB (8 KB rows) and
    // more for the 22 KB rows; below one iteration a row, the heads instead.
    for (int64_t budget : {int64_t{16} << 20, int64_t{64} << 20}) {
      SCOPED_TRACE(::testing::Message() << "alternate, K=" << k << " budget=" << budget);
      const L2Prefetch a = ops::LinearReadsFirst(x.dev, w, ops::LinearOutput::kStore, budget, L2HintForm::kAlternate);
      ExpectWellFormed(a, w, budget);
      EXPECT_GE(a.inner, 2);
      EXPECT_EQ(a.inner_stride, 2 * a.bytes);
      for (const auto& [off, bytes] : Ranges(a, w)) {
        EXPECT_EQ(off % row_bytes % (2 * a.bytes), 0) << "not an even iteration";
        EXPECT_LE(off % row_bytes + bytes, row_bytes) << "past the row";
      }
    }
    const L2Prefetch small = ops::LinearReadsFirst(x.dev, w, ops::LinearOutput::kStore, 1 << 20, L2HintForm::kAlternate);
    EXPECT_EQ(small.inner, 1);
    EXPECT_EQ(small.bytes, (int64_t{1} << 20) / 4096) << "the heads";
    // A budget beyond the weight: the whole weight, once.
    const L2Prefetch all = ops::LinearReadsFirst(x.dev, w, ops::LinearOutput::kStore, int64_t{1} << 30);
    ExpectWellFormed(all, w, int64_t{1} << 30);
    EXPECT_EQ(all.total_bytes(), static_cast<int64_t>(w.nbytes()));
  }
}

TEST_F(L2PrefetchGpu, ReadsFirstIsTheHeadOfEverySplitWhereKIsSplit) {
  // 1024 rows of 4096: fewer row blocks than SMs, so the GEMV splits K over CTAs and every (row,
  // split) span is streamed from its start.
  const int64_t k = 4096, row_bytes = k * 2;
  const auto x = Random({1, k}, DType::kF16);
  const Tensor w = Tensor::Empty({1024, k}, DType::kF16, Device::kCuda);
  const int64_t budget = 2 << 20;
  const L2Prefetch p = ops::LinearReadsFirst(x.dev, w, ops::LinearOutput::kStore, budget);
  ExpectWellFormed(p, w, budget);
  ASSERT_GE(p.inner, 2) << "K split expected";
  EXPECT_EQ(p.outer, 1024);
  for (const auto& [off, bytes] : Ranges(p, w)) {
    EXPECT_EQ(off % row_bytes % p.inner_stride, 0) << "not a split's start";
    EXPECT_LE(bytes, p.inner_stride);
  }
}

TEST_F(L2PrefetchGpu, NoHintWhereNoGemvRuns) {
  const auto x = Random({1, 64}, DType::kF16), x9 = Random({9, 64}, DType::kF16);
  const auto w = Random({128, 64}, DType::kF16);
  EXPECT_TRUE(ops::LinearReadsFirst(x.dev, w.dev, ops::LinearOutput::kStore, 0).empty()) << "zero budget";
  EXPECT_TRUE(ops::LinearReadsFirst(x9.dev, w.dev, ops::LinearOutput::kStore, 1 << 20).empty()) << "9 rows: cuBLASLt";
  const Tensor xf = Random({1, 64}, DType::kF32).dev, wf = Random({128, 64}, DType::kF32).dev;
  EXPECT_TRUE(ops::LinearReadsFirst(xf, wf, ops::LinearOutput::kStore, 1 << 20).empty()) << "fp32: no GEMV";
  const Tensor xc = Tensor::Empty({1, 64}, DType::kF16), wc = Tensor::Empty({128, 64}, DType::kF16);
  EXPECT_TRUE(ops::LinearReadsFirst(xc, wc, ops::LinearOutput::kStore, 1 << 20).empty()) << "CPU, fp16";
  EXPECT_FALSE(ops::LinearReadsFirst(x.dev, w.dev, ops::LinearOutput::kStore, 1 << 20).empty());
}

TEST_F(L2PrefetchGpu, NormsWithAHintGiveTheSameBytes) {
  // The add + norm kernels with a hint launch extra CTAs that only prefetch: the rows' results
  // and the residual stream must be the bytes of the launch without it.
  const Tensor next = Tensor::Empty({11008, 4096}, DType::kF16, Device::kCuda);
  for (DType dtype : {DType::kF16, DType::kBF16}) {
    for (int64_t t : {1, 3, 8}) {
      for (bool rms : {true, false}) {
        SCOPED_TRACE(::testing::Message() << DTypeName(dtype) << " T=" << t << (rms ? " RMS" : " Layer"));
        const int64_t c = 4096;
        const auto x = Random({t, c}, dtype, 3.f, 1.f), y = Random({t, c}, dtype), w = Random({c}, dtype);
        const auto b = Random({c}, dtype);
        const auto xh = Random({t, c}, DType::kF16);
        const L2Prefetch hint = ops::LinearReadsFirst(xh.dev, next, ops::LinearOutput::kStore, 6 << 20);
        ASSERT_FALSE(hint.empty());
        Tensor x_plain = x.dev.Clone(), x_hint = x.dev.Clone();
        Tensor plain = Poisoned({t, c}, dtype), hinted = Poisoned({t, c}, dtype);
        if (rms) {
          ops::AddRmsNorm(&x_plain, y.dev, w.dev, 1e-6f, &plain);
          ops::AddRmsNorm(&x_hint, y.dev, w.dev, 1e-6f, &hinted, hint);
        } else {
          ops::AddLayerNorm(&x_plain, y.dev, w.dev, b.dev, 1e-5f, &plain);
          ops::AddLayerNorm(&x_hint, y.dev, w.dev, b.dev, 1e-5f, &hinted, hint);
        }
        EXPECT_EQ(plain.ToFloats(), hinted.ToFloats());
        EXPECT_EQ(x_plain.ToFloats(), x_hint.ToFloats());
      }
    }
  }
}

}  // namespace
}  // namespace chai
