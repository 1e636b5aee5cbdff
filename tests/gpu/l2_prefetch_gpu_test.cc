// ops::PrefetchToL2 and ops::JoinPrefetches on the GPU: the prefetch is a hint, so every size
// (none, below 16 bytes, unaligned views, more than the tensor holds) leaves the bytes as they were
// and raises no CUDA error; its side-stream fork and join survive stream capture (a recorded step
// with prefetches issued and joined between ops replays to the values of the same ops run
// eagerly); a join with nothing outstanding does nothing. Skips with a reason without a GPU.
#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/ops.h"
#include "kernels/step_graph.h"
#include "tests/gpu/gpu_test_util.h"

namespace chai {
namespace {

class L2PrefetchGpu : public gpu_test::GpuTest {};

// An fp32 device tensor of small integers (sums of them stay exact) and its host copy.
struct Buffer {
  Tensor dev, host;
};
Buffer SmallInts(std::vector<int64_t> shape, int seed) {
  Tensor host = Tensor::Empty(shape, DType::kF32);
  for (int64_t i = 0; i < host.numel(); ++i) host.data<float>()[i] = static_cast<float>((i * 7 + seed) % 23 - 11);
  return Buffer{host.To(Device::kCuda), host};
}

void ExpectNoCudaError() {
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
}

// Declared first so that it runs first: the side stream and its events are then created by a
// prefetch inside the capture (the engine's first prefetch comes in an eager warm-up step).
TEST_F(L2PrefetchGpu, ForkAndJoinInsideARecordedStep) {
  const int64_t n = 300001;  // 1.2 MB
  Buffer x = SmallInts({n}, 1), w = SmallInts({n}, 5), z = SmallInts({n / 3}, 9);
  Tensor one = Tensor::Empty({n}, DType::kF32);
  for (int64_t i = 0; i < n; ++i) one.data<float>()[i] = 1.f;
  one = one.To(Device::kCuda);
  // Writes x, prefetches two tensors that an op reads beside the prefetch, joins, writes again, and
  // forks a second time in the same step.
  const auto step = [&] {
    ops::Add(x.dev, one, &x.dev);
    ops::PrefetchToL2(w.dev, 4097);
    ops::PrefetchToL2(z.dev, std::numeric_limits<int64_t>::max());
    ops::Add(x.dev, w.dev, &x.dev);
    ops::JoinPrefetches();
    ops::Add(x.dev, one, &x.dev);
    ops::PrefetchToL2(w.dev, static_cast<int64_t>(w.dev.nbytes()));
    ops::JoinPrefetches();
  };
  auto graph = StepGraph::Record(Device::kCuda, step);  // an unjoined fork would fail the capture
  ASSERT_TRUE(graph.ok()) << graph.status();
  (*graph)->Replay();
  (*graph)->Replay();
  step();  // and once eagerly, after the capture
  ExpectNoCudaError();
  const Tensor got = x.dev.To(Device::kCpu);
  for (int64_t i = 0; i < n; ++i) {
    const float expected = x.host.data<float>()[i] + 3 * (2 + w.host.data<float>()[i]);
    ASSERT_EQ(got.data<float>()[i], expected) << "element " << i;
  }
  for (const Buffer* b : {&w, &z}) {
    const Tensor back = b->dev.To(Device::kCpu);
    EXPECT_EQ(std::memcmp(back.raw(), b->host.raw(), b->host.nbytes()), 0);
  }
}

TEST_F(L2PrefetchGpu, OddSizesLeaveTheBytesAsTheyWere) {
  // 40 MiB of 12-byte rows: more than one pass of the prefetch grid, and Rows(1, ...) starts at a
  // 12-byte offset (not 16-byte aligned).
  const int64_t rows = (int64_t{40} << 20) / 12;
  Buffer t = SmallInts({rows, 3}, 3);
  const int64_t total = static_cast<int64_t>(t.dev.nbytes());
  const std::vector<Tensor> views = {t.dev, t.dev.Rows(1, rows), t.dev.Rows(rows - 1, rows), t.dev.Rows(5, 6)};
  const std::vector<int64_t> sizes = {-1,    0,     1,     15,   16,   17, 4097, int64_t{1} << 20, (int64_t{3} << 20) + 5,
                                      total - 1, total, total + 1000, std::numeric_limits<int64_t>::max()};
  int calls = 0;
  for (const Tensor& v : views) {
    for (int64_t bytes : sizes) {
      ops::PrefetchToL2(v, bytes);
      if (++calls % 3 == 0) ops::JoinPrefetches();  // several forks may wait for one join
    }
  }
  ops::JoinPrefetches();
  ExpectNoCudaError();
  const Tensor back = t.dev.To(Device::kCpu);
  EXPECT_EQ(std::memcmp(back.raw(), t.host.raw(), t.host.nbytes()), 0);
}

TEST_F(L2PrefetchGpu, JoinWithNothingOutstandingDoesNothing) {
  ops::JoinPrefetches();
  ops::JoinPrefetches();
  Buffer t = SmallInts({64}, 2);
  ops::PrefetchToL2(t.dev, 0);       // nothing issued
  ops::PrefetchToL2(t.host, 256);    // a CPU tensor: nothing
  ops::PrefetchToL2(Tensor(), 256);  // undefined: nothing
  ops::JoinPrefetches();
  auto graph = StepGraph::Record(Device::kCuda, [] { ops::JoinPrefetches(); });
  ASSERT_TRUE(graph.ok()) << graph.status();
  (*graph)->Replay();
  ExpectNoCudaError();
}

}  // namespace
}  // namespace chai
