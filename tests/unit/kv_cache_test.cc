// SequenceKvCache bookkeeping against a walk over its lists: BlocksNeededFor (now one product)
// equals the blocks missing from every live list, Reserve takes exactly that many from the pool
// and fills every live list to the length, and DropK (CHAI) empties one K list for good, in
// random interleavings.
#include "runtime/kv_cache.h"

#include <map>
#include <random>

#include "gtest/gtest.h"
#include "runtime/block_tables.h"

namespace chai {
namespace {

int64_t MissingBlocks(const SequenceKvCache& kv, int64_t length, int block_size) {
  const int64_t per_head = (length + block_size - 1) / block_size;
  int64_t missing = 0;
  for (int l = 0; l < kv.layers(); ++l)
    for (int side = 0; side < 2; ++side)
      for (int h = 0; h < kv.kv_heads(); ++h) {
        if (side == SequenceKvCache::kKey && !kv.HasK(l, h)) {
          EXPECT_TRUE(kv.blocks(l, SequenceKvCache::kKey, h).empty());
          continue;
        }
        const int64_t held = static_cast<int64_t>(kv.blocks(l, SequenceKvCache::Side(side), h).size());
        missing += std::max<int64_t>(0, per_head - held);
      }
  return missing;
}

TEST(SequenceKvCache, BlocksNeededMatchesListsUnderDrops) {
  constexpr int kLayers = 3, kKvHeads = 4, kBlock = 8, kCap = 64;
  std::mt19937 rng(9);
  for (int trial = 0; trial < 20; ++trial) {
    KvBlockPool pool(4096, kBlock, 16, DType::kF32, Device::kCpu);
    BlockTables tables(4, kLayers, kKvHeads, kKvHeads, kCap, Device::kCpu);
    auto row = tables.AcquireRow();
    ASSERT_TRUE(row.ok());
    SequenceKvCache kv(&pool, &tables, *row, kLayers, kKvHeads);
    int64_t length = 0;
    for (int step = 0; step < 40; ++step) {
      if (rng() % 4 == 0) kv.DropK(static_cast<int>(rng() % kLayers), static_cast<int>(rng() % kKvHeads));
      const int64_t next = std::min<int64_t>(length + 1 + rng() % 20, int64_t{kCap} * kBlock);
      for (int64_t probe : {length, next, next + 37}) {
        ASSERT_EQ(kv.BlocksNeededFor(probe), MissingBlocks(kv, probe, kBlock)) << "trial " << trial << " step " << step;
      }
      const int64_t free_before = pool.free_blocks(), needed = kv.BlocksNeededFor(next);
      ASSERT_TRUE(kv.Reserve(next).ok());
      EXPECT_EQ(free_before - pool.free_blocks(), needed);
      EXPECT_EQ(MissingBlocks(kv, next, kBlock), 0);
      kv.Advance(next - length);
      length = next;
    }
  }
}

// The pending writes of the device tables reach the GPU in one unordered scatter, so each entry
// must appear once with its last value: an entry cleared (a dropped K head) and then set again
// by the row's next owner in the same flush once raced, and the stale -1 could win.
TEST(BlockTables, KeepLastWritesMatchesWritesInOrder) {
  std::mt19937 rng(5);
  for (int trial = 0; trial < 50; ++trial) {
    std::vector<int32_t> idx, val;
    std::map<int32_t, int32_t> applied;  // the writes applied one after another
    const int count = static_cast<int>(rng() % 200), span = 1 + static_cast<int>(rng() % 40);
    for (int k = 0; k < count; ++k) {
      idx.push_back(static_cast<int32_t>(rng() % span));
      val.push_back(static_cast<int32_t>(rng() % 7) - 1);
      applied[idx.back()] = val.back();
    }
    KeepLastWrites(&idx, &val);
    ASSERT_EQ(idx.size(), applied.size()) << "trial " << trial;
    size_t k = 0;
    for (const auto& [entry, value] : applied) {
      EXPECT_EQ(idx[k], entry) << "trial " << trial;
      EXPECT_EQ(val[k], value) << "trial " << trial << " entry " << entry;
      ++k;
    }
  }
}

}  // namespace
}  // namespace chai
