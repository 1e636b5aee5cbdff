// Device block tables against the host ones: the same random sequence of row changes (blocks
// taken, K heads cleared, maps set, rows released and taken again) applied to BlockTables on the
// CPU, where every write lands at once, and on the GPU, where writes wait for a Flush and reach
// the device in one scatter. After every flush both must hold the same tables and maps, whether
// the flush's copy waits for the device (Flush) or goes through page-locked staging whose halves
// are used in turn (FlushAsync, as a pipelined decode step's).
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/device_memory.h"
#include "runtime/block_tables.h"

namespace chai {
namespace {

void ExpectSame(const BlockTables& cpu, const BlockTables& gpu, int layers, int step) {
  for (int l = 0; l < layers; ++l) {
    for (bool maps : {false, true}) {
      const Tensor want = maps ? cpu.LayerScoreHeads(l) : cpu.LayerTables(l);
      const Tensor got = (maps ? gpu.LayerScoreHeads(l) : gpu.LayerTables(l)).To(Device::kCpu);
      ASSERT_EQ(want.numel(), got.numel());
      int mismatches = 0;
      for (int64_t i = 0; i < want.numel(); ++i) mismatches += want.data<int32_t>()[i] != got.data<int32_t>()[i];
      EXPECT_EQ(mismatches, 0) << (maps ? "score-head maps" : "block tables") << " of layer " << l << " after step "
                               << step;
    }
  }
}

// `async`: flush through the staging, the parity alternating as a pipelined decode's launches, each
// flush queued behind a 64 MB device copy that keeps the device busy, so that the staged copy is
// still pending when the host goes on (and fills the other half).
void RandomWalk(bool async) {
  constexpr int kRows = 3, kLayers = 2, kKvHeads = 4, kHeads = 8, kCap = 6;
  BlockTables cpu(kRows, kLayers, kKvHeads, kHeads, kCap, Device::kCpu);
  BlockTables gpu(kRows, kLayers, kKvHeads, kHeads, kCap, Device::kCuda);
  std::mt19937 rng(11);
  std::vector<int> live;
  int flushes = 0;
  Tensor busy_src = Tensor::Zeros({16 << 20}, DType::kF32, Device::kCuda), busy_dst = busy_src.Clone();
  for (int step = 0; step < 400; ++step) {
    const int op = static_cast<int>(rng() % 6);
    if (op == 0 || live.empty()) {  // a new sequence (when a row is free)
      auto a = cpu.AcquireRow();
      auto b = gpu.AcquireRow();
      ASSERT_EQ(a.ok(), b.ok());
      if (a.ok()) {
        ASSERT_EQ(*a, *b);
        live.push_back(*a);
      }
      continue;
    }
    const size_t pick = rng() % live.size();
    const int row = live[pick], layer = static_cast<int>(rng() % kLayers), head = static_cast<int>(rng() % kKvHeads);
    if (op == 1) {  // the sequence ends; its row's entries stay as they were
      cpu.ReleaseRow(row);
      gpu.ReleaseRow(row);
      live.erase(live.begin() + static_cast<long>(pick));
    } else if (op == 2) {  // CHAI drops a K head
      cpu.ClearHead(row, layer, 0, head);
      gpu.ClearHead(row, layer, 0, head);
    } else if (op == 3) {  // membership fixed
      std::vector<int> map(kHeads);
      for (int& m : map) m = static_cast<int>(rng() % kHeads);
      cpu.SetScoreHeads(row, layer, map);
      gpu.SetScoreHeads(row, layer, map);
    } else if (op == 4) {  // a block taken
      const int side = static_cast<int>(rng() % 2), index = static_cast<int>(rng() % kCap);
      const int32_t block = static_cast<int32_t>(rng() % 50);
      cpu.SetBlock(row, layer, side, head, index, block);
      gpu.SetBlock(row, layer, side, head, index, block);
    } else {  // a step starts
      if (async) {
        CopyTensor(busy_src, &busy_dst);
        gpu.FlushAsync(flushes++ & 1);
      } else {
        gpu.Flush();
      }
      // Only every other flush is read back, so that two flushes' copies are in flight at once.
      if (!async || flushes % 2 == 0) ExpectSame(cpu, gpu, kLayers, step);
    }
  }
  gpu.Flush();
  ExpectSame(cpu, gpu, kLayers, -1);
}

TEST(BlockTablesGpu, FlushedTablesMatchHostTables) {
  if (!CudaAvailable()) GTEST_SKIP() << "no CUDA device visible";
  RandomWalk(/*async=*/false);
}

TEST(BlockTablesGpu, StagedFlushesMatchHostTables) {
  if (!CudaAvailable()) GTEST_SKIP() << "no CUDA device visible";
  RandomWalk(/*async=*/true);
}

}  // namespace
}  // namespace chai
