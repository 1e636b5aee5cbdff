// gemv_grid::ReadsFirst (kernels/gemv_reads_first_plan.h): the first bytes a decode GEMV streams, for
// the L2 prefetch hint of the kernel before it, against ranges worked out by hand at LLaMA-7B's
// shapes; and the requirement behind the GEMV's default choice that the norms' hints rest on: the
// Q|K|V and gate|up GEMVs a norm prefetches for run in several waves under their defaults, so that
// the hint is a prefix of rows (3% of LLaMA-7B's batch-1 step on an H100; the four-warp default of
// bb17882 put Q|K|V in one wave and lost it: benchmarks/results/llama-7b-tp1-h100.md).
// The configurations as an H100 / H200 runs them: 132 SMs, w8.r16.u4.b3 at 3 CTAs per SM,
// w8.r16.u8.b2 at 2, w4.r16.u4.b6 at 6.
#include "kernels/gemv_reads_first_plan.h"

#include <cstdint>

#include "gtest/gtest.h"
#include "kernels/gemv_grid.h"

namespace chai {
namespace {

using gemv_grid::Config;

constexpr int kSms = 132;
constexpr Config kNarrow{8, 1, 4, 3, 3};  // w8.r16.u4.b3
constexpr Config kWide{8, 1, 8, 2, 2};    // w8.r16.u8.b2
constexpr Config kFour{4, 1, 4, 6, 6};    // w4.r16.u4.b6
constexpr int64_t kMiB = int64_t{1} << 20;

// A weight's address: only offsets from it matter.
const char* const kW = reinterpret_cast<const char*>(uintptr_t{1} << 32);

int64_t Offset(const void* p) { return static_cast<const char*>(p) - kW; }

TEST(GemvReadsFirstPlan, SeveralWavesGiveAPrefixOfRows) {
  // LLaMA-7B's Q|K|V (4096 -> 12288) on the wide configuration: 768 CTAs over 264 resident.
  L2Prefetch p = gemv_grid::ReadsFirst(kW, 12288, 4096, false, kWide, kSms, 6 * kMiB, L2HintForm::kHeads);
  EXPECT_EQ(Offset(p.base), 0);
  EXPECT_EQ(p.base2, nullptr);
  EXPECT_EQ(p.outer, 192);  // 6 MB in 32 KB ranges, back to back
  EXPECT_EQ(p.outer_stride, 32 << 10);
  EXPECT_EQ(p.inner, 1);
  EXPECT_EQ(p.bytes, 32 << 10);
  EXPECT_EQ(p.total_bytes(), 6 * kMiB);
  // A budget beyond the first wave: the first wave's rows only (264 CTAs x 16 rows x 8 KB).
  p = gemv_grid::ReadsFirst(kW, 12288, 4096, false, kWide, kSms, 1024 * kMiB, L2HintForm::kHeads);
  EXPECT_EQ(p.total_bytes(), int64_t{264} * 16 * 8192);
  // gate | up (4096 -> 22016) with the SiLU epilogue: half the budget from the head of each half.
  p = gemv_grid::ReadsFirst(kW, 22016, 4096, true, kWide, kSms, 6 * kMiB, L2HintForm::kHeads);
  EXPECT_EQ(Offset(p.base), 0);
  EXPECT_EQ(Offset(p.base2), int64_t{11008} * 8192);
  EXPECT_EQ(p.outer, 96);
  EXPECT_EQ(p.total_bytes(), 6 * kMiB);
}

TEST(GemvReadsFirstPlan, OneWaveGivesTheHeadOfEveryRow) {
  // o (4096 -> 4096) on the narrow configuration: 256 CTAs over 396 resident, one span a row.
  L2Prefetch p = gemv_grid::ReadsFirst(kW, 4096, 4096, false, kNarrow, kSms, 12 * kMiB, L2HintForm::kHeads);
  EXPECT_EQ(p.outer, 4096);
  EXPECT_EQ(p.outer_stride, 8192);
  EXPECT_EQ(p.inner, 1);
  EXPECT_EQ(p.bytes, 3072);  // 12 MB over 4096 rows
  // down (11008 -> 4096): a row of 22016 bytes, the same 3 KB heads.
  p = gemv_grid::ReadsFirst(kW, 4096, 11008, false, kNarrow, kSms, 12 * kMiB, L2HintForm::kHeads);
  EXPECT_EQ(p.outer_stride, 22016);
  EXPECT_EQ(p.bytes, 3072);
  // Q|K|V on four warps fits one wave (768 of 792): 12288 heads of 512 bytes, the form that gained
  // a sixth of the prefix's time on an H100.
  p = gemv_grid::ReadsFirst(kW, 12288, 4096, false, kFour, kSms, 6 * kMiB, L2HintForm::kHeads);
  EXPECT_EQ(p.ranges(), 12288);
  EXPECT_EQ(p.bytes, 512);
}

TEST(GemvReadsFirstPlan, RowsFormTakesAPrefixInOneWaveToo) {
  // Q|K|V on four warps (one wave): with kRows the same 192 ranges of 32 KB as on the wide
  // configuration's three waves.
  L2Prefetch p = gemv_grid::ReadsFirst(kW, 12288, 4096, false, kFour, kSms, 6 * kMiB, L2HintForm::kRows);
  EXPECT_EQ(Offset(p.base), 0);
  EXPECT_EQ(p.outer, 192);
  EXPECT_EQ(p.bytes, 32 << 10);
  EXPECT_EQ(p.inner, 1);
  // o: at most the whole weight (32 MB), from its first row.
  p = gemv_grid::ReadsFirst(kW, 4096, 4096, false, kNarrow, kSms, 64 * kMiB, L2HintForm::kRows);
  EXPECT_EQ(p.total_bytes(), int64_t{4096} * 8192);
  // A grid of several waves takes the prefix whatever the form.
  EXPECT_EQ(gemv_grid::ReadsFirst(kW, 12288, 4096, false, kWide, kSms, 6 * kMiB, L2HintForm::kAlternate).bytes,
            32 << 10);
}

TEST(GemvReadsFirstPlan, SplitsOfKEachGetAHead) {
  // 1024 rows of 4096: 64 row blocks, K split 4 ways (2048-byte spans, gemv_grid_test).
  const L2Prefetch p = gemv_grid::ReadsFirst(kW, 1024, 4096, false, kNarrow, kSms, 1 * kMiB, L2HintForm::kHeads);
  EXPECT_EQ(p.outer, 1024);
  EXPECT_EQ(p.inner, 4);
  EXPECT_EQ(p.inner_stride, 2048);
  EXPECT_EQ(p.bytes, 256);  // 1 MB over 4096 spans
}

TEST(GemvReadsFirstPlan, AlternateTakesEveryOtherIteration) {
  // o: a CTA iteration is 4 * u * warps chunks = 2 KB of a row, four of them a row.
  L2Prefetch p = gemv_grid::ReadsFirst(kW, 4096, 4096, false, kNarrow, kSms, 16 * kMiB, L2HintForm::kAlternate);
  EXPECT_EQ(p.inner, 2);
  EXPECT_EQ(p.inner_stride, 4096);
  EXPECT_EQ(p.bytes, 2048);
  // Room for one iteration a row: the first only.
  p = gemv_grid::ReadsFirst(kW, 4096, 4096, false, kNarrow, kSms, 12 * kMiB, L2HintForm::kAlternate);
  EXPECT_EQ(p.inner, 1);
  // Less than an iteration a row: back to the heads.
  p = gemv_grid::ReadsFirst(kW, 4096, 4096, false, kNarrow, kSms, 6 * kMiB, L2HintForm::kAlternate);
  EXPECT_EQ(p.inner_stride, 8192);
  EXPECT_EQ(p.bytes, 1536);
}

TEST(GemvReadsFirstPlan, NothingBelowSixteenBytes) {
  EXPECT_TRUE(gemv_grid::ReadsFirst(kW, 4096, 4096, false, kNarrow, kSms, 15, L2HintForm::kHeads).empty());
  EXPECT_TRUE(gemv_grid::ReadsFirst(kW, 4096, 4096, false, kNarrow, kSms, 0, L2HintForm::kHeads).empty());
  // A budget under 16 bytes a row rounds the heads to nothing.
  EXPECT_TRUE(gemv_grid::ReadsFirst(kW, 4096, 4096, false, kNarrow, kSms, 4096 * 15, L2HintForm::kHeads).empty());
}

// The norms' hints at LLaMA-7B's TP = 1 are for Q|K|V and gate|up: under the default configuration
// each must run in several waves (the prefix form), or the hint loses most of its gain.
TEST(GemvReadsFirstPlan, TheGemvsTheNormsPrefetchForTakeThePrefixForm) {
  struct Shape {
    int64_t k, n;
    bool paired;
  };
  const Shape hinted[] = {{4096, 12288, false}, {4096, 22016, true}};
  for (const Shape& s : hinted) {
    const gemv_grid::Pick pick = gemv_grid::ChooseDefault(s.k, s.n, kNarrow, kWide, kFour, kSms);
    const Config& c = pick == gemv_grid::Pick::kWide ? kWide : pick == gemv_grid::Pick::kFour ? kFour : kNarrow;
    const gemv_grid::Grid g = gemv_grid::Plan(s.n, s.k, s.paired, c, kSms);
    EXPECT_GT(g.row_blocks * g.splits, int64_t{kSms} * c.min_blocks) << s.k << " -> " << s.n;
    const L2Prefetch p = gemv_grid::ReadsFirst(kW, s.n, s.k, s.paired, c, kSms, 6 * kMiB, L2HintForm::kHeads);
    EXPECT_EQ(p.bytes, 32 << 10) << s.k << " -> " << s.n;
  }
}

}  // namespace
}  // namespace chai
