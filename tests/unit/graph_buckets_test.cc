// Decode graph length buckets (runtime/graph_buckets.h): the bound a recorded decode step plans
// its attention for holds the batch's longest sequence, stays within 1.5x of it (above the
// smallest bucket), never exceeds the capacity, and takes few distinct values.
#include "runtime/graph_buckets.h"

#include <set>

#include "gtest/gtest.h"

namespace chai {
namespace {

TEST(GraphBuckets, Sequence) {
  const int64_t expected[] = {128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096};
  for (int64_t b : expected) EXPECT_EQ(DecodeLengthBucket(b, 1 << 20), b);
  EXPECT_EQ(DecodeLengthBucket(1, 4096), 128);
  EXPECT_EQ(DecodeLengthBucket(129, 4096), 192);
  EXPECT_EQ(DecodeLengthBucket(513, 4096), 768);
  EXPECT_EQ(DecodeLengthBucket(3073, 4096), 4096);
}

TEST(GraphBuckets, BoundsEveryLength) {
  for (int64_t capacity : {64, 100, 2048, 4096, 5000}) {
    std::set<int64_t> distinct;
    for (int64_t len = 1; len <= capacity; ++len) {
      const int64_t b = DecodeLengthBucket(len, capacity);
      ASSERT_GE(b, len) << "capacity " << capacity;
      ASSERT_LE(b, capacity);
      if (len > 128) {
        ASSERT_LE(2 * b, 3 * len) << "len " << len;
      }
      distinct.insert(b);
    }
    EXPECT_LE(distinct.size(), 2u * 12u) << "capacity " << capacity;
  }
}

}  // namespace
}  // namespace chai
