// Decode attention's split of the sequence over CTAs (kernels/decode_splits.h) against plans worked
// out by hand for the shapes the benchmarks run (132 SMs, two kernel-4 CTAs per SM: 264 resident),
// and the properties every plan must have (the decode kernels index chunks by them).
#include "kernels/decode_splits.h"

#include <cstdint>

#include "gtest/gtest.h"

namespace chai {
namespace {

using decode_splits::Best;
using decode_splits::Split;

constexpr int64_t kResident = 264;

TEST(DecodeSplits, BatchOneSplitsIntoOneWave) {
  // LLaMA-7B's 32 heads at 512 positions: 32 busy CTAs per chunk. s = 8 gives chunks of 64 and
  // 256 CTAs, one wave: cost 1 x (64 + 64) = 128, against 1 x (128 + 64) for s = 4 .. 7 and
  // 1 x (512 + 64) unsplit.
  const Split s = Best(512, 32, kResident);
  EXPECT_EQ(s.chunk, 64);
  EXPECT_EQ(s.splits, 8);
  // The cap (CHAI_DECODE_V4_MAX_SPLITS) keeps the best plan under it: two chunks of 256.
  const Split capped = Best(512, 32, kResident, 2);
  EXPECT_EQ(capped.chunk, 256);
  EXPECT_EQ(capped.splits, 2);
}

TEST(DecodeSplits, ManyCtasKeepWholeSequences) {
  // Batch 32 at 1024 positions, 1024 busy CTAs: unsplit is 4 waves x (1024 + 64) = 4352; two
  // chunks of 512 take 8 waves x 576 = 4608, four of 256 16 x 320 = 5120.
  EXPECT_EQ(Best(1024, 1024, kResident).splits, 1);
  EXPECT_EQ(Best(1024, 1024, kResident).chunk, 1024);
  // Batch 8 at 2048, 256 busy: unsplit fits one wave (2112); two chunks need two (2 x 1088).
  EXPECT_EQ(Best(2048, 256, kResident).splits, 1);
  EXPECT_EQ(Best(2048, 256, kResident).chunk, 2048);
}

TEST(DecodeSplits, ChaiScoresPassOfBatchEight) {
  // Kernel 4's CHAI scores pass at batch 8, 2048 positions, 4 representatives: 32 busy items.
  // Eight chunks of 256 are one wave of 256 CTAs (cost 320); sixteen of 128 need two (2 x 192).
  const Split s = Best(2048, 32, kResident);
  EXPECT_EQ(s.chunk, 256);
  EXPECT_EQ(s.splits, 8);
}

TEST(DecodeSplits, CtaCostFavoursFewerLongerChunks) {
  // 64 busy CTAs (batch 2 of 32 heads) at 16384 positions: four chunks of 4096 are one wave of 256
  // CTAs, 1 x (4096 + 64) = 4160. By positions alone 37 chunks of 448 would be shorter (9 waves x
  // 448 = 4032 < 4096), but each CTA's fixed cost makes them 9 x 512 = 4608.
  const Split s = Best(16384, 64, kResident);
  EXPECT_EQ(s.chunk, 4096);
  EXPECT_EQ(s.splits, 4);
}

TEST(DecodeSplits, DegenerateArgumentsCountAsOne) {
  for (const Split s : {Best(0, 0, 0), Best(1, 1, 1), Best(-5, -1, -1, -3)}) {
    EXPECT_EQ(s.chunk, decode_splits::kChunkAlign);
    EXPECT_EQ(s.splits, 1);
  }
}

TEST(DecodeSplits, EveryPlanCoversTheSequenceInAlignedChunks) {
  for (int64_t len = 1; len <= 20000; len += 37) {
    for (int64_t busy : {1, 7, 32, 256, 1024, 5000}) {
      for (int64_t resident : {1, 132, 264, 924}) {
        for (int64_t cap : {0, 1, 3, 8}) {
          const Split s = Best(len, busy, resident, cap);
          SCOPED_TRACE(::testing::Message() << "len " << len << " busy " << busy << " resident " << resident
                                            << " cap " << cap);
          ASSERT_GT(s.chunk, 0);
          ASSERT_EQ(s.chunk % decode_splits::kChunkAlign, 0);
          ASSERT_EQ(s.splits, (len + s.chunk - 1) / s.chunk);  // no empty chunk, all positions covered
          ASSERT_LE(s.splits, (len + decode_splits::kChunkAlign - 1) / decode_splits::kChunkAlign);
          if (cap > 0) {
            ASSERT_LE(s.splits, cap);
          }
          // At most ~16 waves beyond what the unsplit launch needs.
          const int64_t waves = (busy * s.splits + resident - 1) / resident;
          ASSERT_LE(waves, (busy + resident - 1) / resident + 16);
        }
      }
    }
  }
}

}  // namespace
}  // namespace chai
