// SequenceKvCache bookkeeping against a walk over its lists: BlocksNeededFor (now one product)
// equals the blocks missing from every live list, Reserve takes exactly that many from the pool
// and fills every live list to the length, and DropK (CHAI) empties one K list for good, in
// random interleavings. A prompt's blocks form one run per list.
#include "runtime/kv_cache.h"

#include <algorithm>
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

// Every list of a sequence holds one run of consecutive block ids, i.e. contiguous pool memory.
bool ListsAreRuns(const SequenceKvCache& kv) {
  for (int l = 0; l < kv.layers(); ++l)
    for (int side = 0; side < 2; ++side)
      for (int h = 0; h < kv.kv_heads(); ++h) {
        const std::vector<int32_t>& b = kv.blocks(l, SequenceKvCache::Side(side), h);
        for (size_t i = 1; i < b.size(); ++i)
          if (b[i] != b[i - 1] + 1) return false;
      }
  return true;
}

// Decode attention streams each (layer, side, head) list; contiguous runs read 1.5-4% faster
// than scattered blocks on an H200 (benchmarks/results/attention-decode-h200.md). A prompt's
// blocks, taken in one Reserve, come as one run per list from a fresh pool, and again from a pool
// whose blocks a sequence of the same length returned (the free stack gives its lists back in
// order). Blocks that decode adds one at a time need not be runs.
TEST(SequenceKvCache, PromptBlocksAreRunsPerList) {
  constexpr int kLayers = 3, kKvHeads = 4, kBlock = 16, kCap = 64;
  BlockTables tables(4, kLayers, kKvHeads, kKvHeads, kCap, Device::kCpu);
  for (int64_t prompt : {int64_t{1}, int64_t{17}, int64_t{300}, int64_t{kCap} * kBlock}) {
    KvBlockPool pool(4096, kBlock, 8, DType::kF32, Device::kCpu);
    for (int generation = 0; generation < 3; ++generation) {  // fresh blocks, then the previous sequence's
      auto row = tables.AcquireRow();
      ASSERT_TRUE(row.ok());
      SequenceKvCache kv(&pool, &tables, *row, kLayers, kKvHeads);
      ASSERT_TRUE(kv.Reserve(prompt).ok());
      EXPECT_TRUE(ListsAreRuns(kv)) << "prompt " << prompt << " generation " << generation;
    }
  }
  // The check can fail: lists grown a block at a time interleave.
  KvBlockPool pool(4096, kBlock, 8, DType::kF32, Device::kCpu);
  auto row = tables.AcquireRow();
  ASSERT_TRUE(row.ok());
  SequenceKvCache grown(&pool, &tables, *row, kLayers, kKvHeads);
  for (int64_t length = 1; length <= 3 * kBlock; length += kBlock) ASSERT_TRUE(grown.Reserve(length).ok());
  EXPECT_FALSE(ListsAreRuns(grown));
}

// The device tables' pending entries reach the GPU in one scatter that applies its writes in no
// set order, and an entry may be listed twice (a row's K head cleared, then the row's next owner
// taking a block there: that once let a stale -1 win). With PendingValues every order leaves the
// device equal to the host mirror; each write's own value does not (the check that this test
// can tell them apart).
TEST(BlockTables, PendingValuesMakeAnyScatterOrderExact) {
  std::mt19937 rng(5);
  int own_values_wrong = 0;
  for (int trial = 0; trial < 50; ++trial) {
    const int entries = 1 + static_cast<int>(rng() % 40);
    std::vector<int32_t> device(entries);
    for (int32_t& v : device) v = static_cast<int32_t>(rng() % 7) - 1;
    std::vector<int32_t> mirror = device, idx, own;
    const int writes = static_cast<int>(rng() % 120);
    for (int w = 0; w < writes; ++w) {  // BlockTables::Put: only changes are listed
      const int e = static_cast<int>(rng() % entries);
      const int32_t v = static_cast<int32_t>(rng() % 7) - 1;
      if (mirror[e] == v) continue;
      mirror[e] = v;
      idx.push_back(e);
      own.push_back(v);
    }
    const std::vector<int32_t> sent = PendingValues(mirror, idx);
    ASSERT_EQ(sent.size(), idx.size());
    std::vector<size_t> order(idx.size());
    for (size_t k = 0; k < order.size(); ++k) order[k] = k;
    for (int pass = 0; pass < 3; ++pass) {  // forward, backward, shuffled
      if (pass == 1) std::reverse(order.begin(), order.end());
      if (pass == 2) std::shuffle(order.begin(), order.end(), rng);
      std::vector<int32_t> got = device, with_own = device;
      for (size_t k : order) {
        got[idx[k]] = sent[k];
        with_own[idx[k]] = own[k];
      }
      EXPECT_EQ(got, mirror) << "trial " << trial << " pass " << pass;
      own_values_wrong += with_own != mirror;
    }
  }
  EXPECT_GT(own_values_wrong, 0) << "no trial listed an entry twice: the test would not catch the race";
}

}  // namespace
}  // namespace chai
