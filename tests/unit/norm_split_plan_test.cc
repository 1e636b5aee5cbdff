// The split all-reduce + norm's share of a message per block (parallel/norm_split_plan.h): every
// group owned by exactly one block, and each row's expected arrivals equal to the blocks that touch
// it, over odd and even shapes; and two shapes worked out by hand.
#include "parallel/norm_split_plan.h"

#include <cstdint>
#include <vector>

#include "gtest/gtest.h"

namespace chai {
namespace {

using norm_split::Range;

TEST(NormSplitPlan, ByHand) {
  // OPT-66B's decode row at TP = 4, fp16: 9216 columns = 1152 groups over 32 blocks, 36 each;
  // one row, all 32 blocks arrive.
  EXPECT_EQ(norm_split::Chunk(1152, 32), 36);
  const Range last = norm_split::Owned(1152, 32, 31);
  EXPECT_EQ(last.begin, 1116);
  EXPECT_EQ(last.end, 1152);
  EXPECT_EQ(norm_split::Arrivals(0, 1152, 36), 32);
  // Three rows of 125 groups (fp16, 1000 columns) over 32 blocks: 12 each, 375 / 12 -> blocks
  // 0-31 own 12, 12, ..., the last 3. Row 0 = groups 0-124: blocks 0-10; row 1 = 125-249: blocks
  // 10-20 (block 10 touches both); row 2 = 250-374: blocks 20-31.
  EXPECT_EQ(norm_split::Chunk(375, 32), 12);
  EXPECT_EQ(norm_split::Arrivals(0, 125, 12), 11);
  EXPECT_EQ(norm_split::Arrivals(1, 125, 12), 11);
  EXPECT_EQ(norm_split::Arrivals(2, 125, 12), 12);
  const Range rows10 = norm_split::RowsTouched(norm_split::Owned(375, 32, 10), 125);
  EXPECT_EQ(rows10.begin, 0);
  EXPECT_EQ(rows10.end, 2);
  const Range last3 = norm_split::Owned(375, 32, 31);
  EXPECT_EQ(last3.end - last3.begin, 3);
  // Fewer groups than blocks: one group each, the rest own none and touch no row.
  const Range none = norm_split::Owned(5, 32, 7);
  EXPECT_GE(none.begin, none.end);
  const Range no_rows = norm_split::RowsTouched(none, 5);
  EXPECT_GE(no_rows.begin, no_rows.end);
}

TEST(NormSplitPlan, EveryGroupOnceAndEveryRowCountedByItsBlocks) {
  for (int blocks : {1, 2, 3, 7, 16, 31, 32}) {
    for (int64_t rows = 1; rows <= 16; ++rows) {
      for (int64_t vecs : {1, 2, 7, 64, 125, 250, 512, 1152, 2048}) {
        const int64_t groups = rows * vecs;
        const int64_t chunk = norm_split::Chunk(groups, blocks);
        std::vector<int> owners(groups, 0), touched(rows, 0);
        int64_t next = 0;
        for (int b = 0; b < blocks; ++b) {
          const Range owned = norm_split::Owned(groups, blocks, b);
          if (owned.begin < owned.end) {
            EXPECT_EQ(owned.begin, next) << "contiguous, in block order";
            next = owned.end;
          }
          for (int64_t g = owned.begin; g < owned.end; ++g) ++owners[g];
          const Range touches = norm_split::RowsTouched(owned, vecs);
          for (int64_t r = touches.begin; r < touches.end; ++r) {
            ++touched[r];
            // The block really owns a group of each row it counts itself in on.
            EXPECT_LT(owned.begin, (r + 1) * vecs);
            EXPECT_GT(owned.end, r * vecs);
          }
        }
        const std::string what = "blocks " + std::to_string(blocks) + ", rows " + std::to_string(rows) +
                                 ", vecs " + std::to_string(vecs);
        EXPECT_EQ(next, groups) << what;
        for (int64_t g = 0; g < groups; ++g) ASSERT_EQ(owners[g], 1) << what << ", group " << g;
        for (int64_t r = 0; r < rows; ++r) {
          ASSERT_EQ(touched[r], norm_split::Arrivals(r, vecs, chunk)) << what << ", row " << r;
        }
      }
    }
  }
}

}  // namespace
}  // namespace chai
