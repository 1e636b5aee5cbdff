// The decode GEMV's launch arithmetic (kernels/gemv_grid.h) against grids worked out by hand, and
// its default choice: unchanged by width at LLaMA-7B's shards (TP = 1, 2, 4), by shape at the two
// OPT-66B shards of TP = 4 where the GPU sweep found the width rule misfit, and the four-warp
// configuration where it shares a CTA's span better (benchmarks/results/gemm-h200.md).
// The configurations as an H100 / H200 runs them: 132 SMs, w8.r16.u4.b3 at 3 CTAs per SM,
// w8.r16.u8.b2 at 2, w4.r16.u4.b6 at 6.
#include "kernels/gemv_grid.h"

#include <cstdint>

#include "gtest/gtest.h"

namespace chai {
namespace {

using gemv_grid::Config;
using gemv_grid::Grid;

constexpr int kSms = 132;
constexpr Config kNarrow{8, 1, 4, 3, 3};  // w8.r16.u4.b3
constexpr Config kWide{8, 1, 8, 2, 2};    // w8.r16.u8.b2
constexpr Config kFour{4, 1, 4, 6, 6};    // w4.r16.u4.b6

TEST(GemvGrid, RowBlocksAndSplits) {
  // 16 rows a block; at least as many row blocks as SMs: no split of K.
  Grid g = gemv_grid::Plan(12288, 4096, false, kWide, kSms);
  EXPECT_EQ(g.row_blocks, 768);
  EXPECT_EQ(g.splits, 1);
  EXPECT_EQ(g.split_chunks, 512);
  // Paired halves (SiLU over gate | up): 8 output columns a block over n / 2.
  g = gemv_grid::Plan(22016, 4096, true, kWide, kSms);
  EXPECT_EQ(g.row_blocks, 1376);
  // A partial last block rounds up.
  EXPECT_EQ(gemv_grid::Plan(4097, 1032, false, kNarrow, kSms).row_blocks, 257);
  // 64 row blocks: K split up to a wave at min_blocks (132 * 3 / 64 = 6), capped by a warp
  // iteration per split (512 chunks / (4 * 4 * 8) = 4): 4 splits of 128 chunks.
  g = gemv_grid::Plan(1024, 4096, false, kNarrow, kSms);
  EXPECT_EQ(g.row_blocks, 64);
  EXPECT_EQ(g.splits, 4);
  EXPECT_EQ(g.split_chunks, 128);
  // Too short a K for any split: 33 chunks, less than one iteration of the 8 warps.
  g = gemv_grid::Plan(100, 264, false, kNarrow, kSms);
  EXPECT_EQ(g.row_blocks, 7);
  EXPECT_EQ(g.splits, 1);
  EXPECT_EQ(g.split_chunks, 33);
}

TEST(GemvGrid, WarpBalanceAndLastWave) {
  // OPT-66B's o at TP = 4, K = 2304 (288 chunks): u8 makes 9 iterations over 8 warps (the busiest
  // has 2: 9 / 16), u4 18 (the busiest 3: 18 / 24).
  const Grid o_wide = gemv_grid::Plan(9216, 2304, false, kWide, kSms);
  const Grid o_narrow = gemv_grid::Plan(9216, 2304, false, kNarrow, kSms);
  EXPECT_DOUBLE_EQ(gemv_grid::WarpBalance(kWide, o_wide), 9.0 / 16.0);
  EXPECT_DOUBLE_EQ(gemv_grid::WarpBalance(kNarrow, o_narrow), 18.0 / 24.0);
  // K = 4096: 16 or 32 iterations, even.
  EXPECT_DOUBLE_EQ(gemv_grid::WarpBalance(kWide, gemv_grid::Plan(4096, 4096, false, kWide, kSms)), 1.0);
  // OPT-66B's Q|K|V at TP = 4: 432 row blocks over 396 resident u4.b3 CTAs leave a last wave of 36;
  // over 264 u8.b2 CTAs one of 168.
  const Grid qkv_narrow = gemv_grid::Plan(6912, 9216, false, kNarrow, kSms);
  EXPECT_EQ(qkv_narrow.row_blocks, 432);
  EXPECT_DOUBLE_EQ(gemv_grid::LastWaveFill(kNarrow, qkv_narrow, kSms), 36.0 / 396.0);
  EXPECT_DOUBLE_EQ(gemv_grid::LastWaveFill(kWide, gemv_grid::Plan(6912, 9216, false, kWide, kSms), kSms),
                   168.0 / 264.0);
  // One wave or less, or whole waves: no partial last wave.
  EXPECT_EQ(gemv_grid::LastWaveFill(kNarrow, gemv_grid::Plan(4096, 4096, false, kNarrow, kSms), kSms), 0.0);
  EXPECT_EQ(gemv_grid::LastWaveFill(kWide, Grid{528, 1, 512}, kSms), 0.0);
}

TEST(GemvGrid, DefaultByShape) {
  struct Shape {
    int64_t k, n;
  };
  // LLaMA-7B's projections at TP = 1, 2 and 4 (Q|K|V and gate|up stacked), and its LM head:
  // the width rule's choice (wide from N = 8192) stands.
  const Shape llama[] = {{4096, 12288}, {4096, 4096}, {4096, 22016}, {11008, 4096}, {4096, 6144}, {2048, 4096},
                         {4096, 11008}, {5504, 4096}, {4096, 3072},  {1024, 4096},  {4096, 5504}, {2752, 4096},
                         {4096, 32000}, {4096, 16000}, {4096, 8000}};
  for (const Shape& s : llama) {
    EXPECT_EQ(gemv_grid::ChooseWide(s.k, s.n, kNarrow, kWide, kSms, false), s.n >= 8192) << s.k << " -> " << s.n;
  }
  // OPT-66B at TP = 4: o (2304 -> 9216) takes the narrow one, Q|K|V (9216 -> 6912) the wide one;
  // fc1, fc2 and the LM head shard keep the width rule's wide one.
  EXPECT_FALSE(gemv_grid::ChooseWide(2304, 9216, kNarrow, kWide, kSms, false));
  EXPECT_TRUE(gemv_grid::ChooseWide(9216, 6912, kNarrow, kWide, kSms, false));
  EXPECT_TRUE(gemv_grid::ChooseWide(9216, 9216, kNarrow, kWide, kSms, false));
  EXPECT_TRUE(gemv_grid::ChooseWide(9216, 12568, kNarrow, kWide, kSms, false));
  // By width only (CHAI_GEMV_DEFAULT=width): the old choice at those two as well.
  EXPECT_TRUE(gemv_grid::ChooseWide(2304, 9216, kNarrow, kWide, kSms, true));
  EXPECT_FALSE(gemv_grid::ChooseWide(9216, 6912, kNarrow, kWide, kSms, true));
}

TEST(GemvGrid, FourWarpsOnlyWhereTheDefaultSharesUnevenly) {
  struct Shape {
    int64_t k, n;
  };
  // K = 2304 (OPT-66B's o at TP = 4): the default u4.b3 makes 18 iterations over 8 warps (18 / 24);
  // four warps make them at 18 / 20.
  const Grid o_four = gemv_grid::Plan(9216, 2304, false, kFour, kSms);
  EXPECT_DOUBLE_EQ(gemv_grid::WarpBalance(kFour, o_four), 18.0 / 20.0);
  EXPECT_TRUE(gemv_grid::FourWarpsShareBetter(2304, 9216, kNarrow, kFour, kSms));
  // Every other shard keeps its default: LLaMA-7B at TP = 1, 2, 4 and its LM head, OPT-66B's
  // Q|K|V, fc1, fc2 and LM head at TP = 4 (each with the configuration ChooseWide gives it).
  const Shape keep[] = {{4096, 12288}, {4096, 4096}, {4096, 22016}, {11008, 4096}, {4096, 6144}, {2048, 4096},
                        {4096, 11008}, {5504, 4096}, {4096, 3072},  {1024, 4096},  {4096, 5504}, {2752, 4096},
                        {4096, 32000}, {9216, 6912}, {9216, 9216},  {9216, 12568}};
  for (const Shape& s : keep) {
    const Config& chosen = gemv_grid::ChooseWide(s.k, s.n, kNarrow, kWide, kSms, false) ? kWide : kNarrow;
    EXPECT_FALSE(gemv_grid::FourWarpsShareBetter(s.k, s.n, chosen, kFour, kSms)) << s.k << " -> " << s.n;
  }
}

TEST(GemvGrid, ChooseDefaultComposesTheRules) {
  using gemv_grid::Pick;
  const auto choose = [](int64_t k, int64_t n, const gemv_grid::Rules& rules = {}) {
    return gemv_grid::ChooseDefault(k, n, kNarrow, kWide, kFour, kSms, rules);
  };
  // LLaMA-7B at TP = 1: Q|K|V and gate|up wide, o and down narrow, nothing on four warps.
  EXPECT_EQ(choose(4096, 12288), Pick::kWide);
  EXPECT_EQ(choose(4096, 22016), Pick::kWide);
  EXPECT_EQ(choose(4096, 4096), Pick::kNarrow);
  EXPECT_EQ(choose(11008, 4096), Pick::kNarrow);
  // OPT-66B at TP = 4: o on four warps (short rows), Q|K|V wide by its last wave.
  EXPECT_EQ(choose(2304, 9216), Pick::kFour);
  EXPECT_EQ(choose(9216, 6912), Pick::kWide);
  // By width alone: the width rule's answer, and no four-warp move.
  const gemv_grid::Rules width{.by_width_only = true, .four_warps = gemv_grid::FourWarpsRule::kAll};
  EXPECT_EQ(choose(2304, 9216, width), Pick::kWide);
  EXPECT_EQ(choose(9216, 6912, width), Pick::kNarrow);
  EXPECT_EQ(choose(4096, 12288, width), Pick::kWide);
}

TEST(GemvGrid, FourWarpsRuleOptsIn) {
  using gemv_grid::FourWarpsRule;
  using gemv_grid::Pick;
  const auto choose = [](int64_t k, int64_t n, FourWarpsRule rule, bool hinted) {
    return gemv_grid::ChooseDefault(k, n, kNarrow, kWide, kFour, kSms,
                                    gemv_grid::Rules{.four_warps = rule, .first_bytes_in_l2 = hinted});
  };
  // LLaMA-7B's Q|K|V at TP = 1 (768 blocks: one four-warp wave, three wide ones).
  EXPECT_EQ(choose(4096, 12288, FourWarpsRule::kOff, false), Pick::kWide);
  EXPECT_EQ(choose(4096, 12288, FourWarpsRule::kAll, true), Pick::kFour);
  EXPECT_EQ(choose(4096, 12288, FourWarpsRule::kUnhinted, true), Pick::kWide);
  EXPECT_EQ(choose(4096, 12288, FourWarpsRule::kUnhinted, false), Pick::kFour);
  // Past one four-warp wave (gate|up at TP = 1) or narrow (o): no rule moves it.
  EXPECT_EQ(choose(4096, 22016, FourWarpsRule::kAll, false), Pick::kWide);
  EXPECT_EQ(choose(4096, 4096, FourWarpsRule::kAll, false), Pick::kNarrow);
}

// The runtime's default rule (CHAI_GEMV_FOUR_WARPS=unhinted) at the shards the engine runs, each
// with the hint the engine gives it (the norm or the all-reduce + norm before Q|K|V, gate|up and
// fc1 prefetches their first bytes; nothing before o, down, fc2 or the LM head does): of LLaMA-7B
// at TP = 1, 2 and 4 nothing moves to four warps (what the H100 measured level), of OPT-66B at
// TP = 4 fc2 and the LM head do (1.3-1.9% off its step on 4 x H200, opt-66b-tp4-h200.md).
TEST(GemvGrid, TheDefaultRuleMovesOnlyTheUnhintedWideShards) {
  using gemv_grid::Pick;
  struct Shard {
    const char* name;
    int64_t k, n;
    bool hinted;
    Pick off, unhinted;  // the choice without the rule and under it
  };
  const Shard shards[] = {
      {"LLaMA-7B TP1 Q|K|V", 4096, 12288, true, Pick::kWide, Pick::kWide},
      {"LLaMA-7B TP1 gate|up", 4096, 22016, true, Pick::kWide, Pick::kWide},
      {"LLaMA-7B TP1 o", 4096, 4096, false, Pick::kNarrow, Pick::kNarrow},
      {"LLaMA-7B TP1 down", 11008, 4096, false, Pick::kNarrow, Pick::kNarrow},
      {"LLaMA-7B TP1 LM head", 4096, 32000, false, Pick::kWide, Pick::kWide},
      {"LLaMA-7B TP2 Q|K|V", 4096, 6144, true, Pick::kNarrow, Pick::kNarrow},
      {"LLaMA-7B TP2 gate|up", 4096, 11008, true, Pick::kWide, Pick::kWide},
      {"LLaMA-7B TP2 LM head", 4096, 16000, false, Pick::kWide, Pick::kWide},
      {"LLaMA-7B TP4 gate|up", 4096, 5504, true, Pick::kNarrow, Pick::kNarrow},
      {"LLaMA-7B TP4 LM head", 4096, 8000, false, Pick::kNarrow, Pick::kNarrow},
      {"OPT-66B TP4 Q|K|V", 9216, 6912, true, Pick::kWide, Pick::kWide},
      {"OPT-66B TP4 o", 2304, 9216, false, Pick::kFour, Pick::kFour},
      {"OPT-66B TP4 fc1", 9216, 9216, true, Pick::kWide, Pick::kWide},
      {"OPT-66B TP4 fc2", 9216, 9216, false, Pick::kWide, Pick::kFour},
      {"OPT-66B TP4 LM head", 9216, 12568, false, Pick::kWide, Pick::kFour},
  };
  for (const Shard& s : shards) {
    const auto choose = [&](gemv_grid::FourWarpsRule rule) {
      return gemv_grid::ChooseDefault(s.k, s.n, kNarrow, kWide, kFour, kSms,
                                      gemv_grid::Rules{.four_warps = rule, .first_bytes_in_l2 = s.hinted});
    };
    EXPECT_EQ(choose(gemv_grid::FourWarpsRule::kOff), s.off) << s.name;
    EXPECT_EQ(choose(gemv_grid::FourWarpsRule::kUnhinted), s.unhinted) << s.name;
  }
}

// CHAI_GEMV_FOUR_WARPS's rule (gemv.cu's FourWarpsSetting).
TEST(GemvGrid, FourWarpsFitOneWaveWhereTheWideOnesSpill) {
  struct Shape {
    int64_t k, n;
  };
  // Row blocks of 16 rows against 264 resident wide CTAs and 792 four-warp ones: LLaMA-7B's Q|K|V
  // at TP = 1 (768 blocks), gate|up at TP = 2 (688); OPT-66B at TP = 4: Q|K|V (432), fc1 and fc2
  // (576), the LM head shard (786).
  const Shape four[] = {{4096, 12288}, {4096, 11008}, {9216, 6912}, {9216, 9216}, {9216, 12568}};
  for (const Shape& s : four) {
    EXPECT_TRUE(gemv_grid::WideTakesFourWarps(s.k, s.n, kWide, kFour, kSms)) << s.k << " -> " << s.n;
  }
  // Past one four-warp wave (LLaMA-7B's gate|up at TP = 1: 1376 blocks; its LM head: 2000) or
  // within one wide wave (256 blocks at N = 4096): the wide one stays.
  const Shape wide[] = {{4096, 22016}, {4096, 32000}, {4096, 4096}, {11008, 4096}, {4096, 12688}};
  for (const Shape& s : wide) {
    EXPECT_FALSE(gemv_grid::WideTakesFourWarps(s.k, s.n, kWide, kFour, kSms)) << s.k << " -> " << s.n;
  }
  // The boundary: 792 row blocks fit (N = 12672), 793 do not (N = 12688).
  EXPECT_TRUE(gemv_grid::WideTakesFourWarps(4096, 12672, kWide, kFour, kSms));
  EXPECT_FALSE(gemv_grid::WideTakesFourWarps(4096, 12673, kWide, kFour, kSms));
}

}  // namespace
}  // namespace chai
