// Under mpirun with 2 and 4 ranks (CPU backend, MPI communicator): the latency benchmark's floor
// gains an all-reduce term under tensor parallelism, measured through the engine's communicator,
// and keeps only the memory term on one rank.
#include "runtime/latency_bench.h"

#include <mpi.h>

#include <cmath>

#include "gtest/gtest.h"
#include "parallel/collective_latency.h"
#include "parallel/mpi_communicator.h"
#include "tests/support/engine_helpers.h"
#include "tests/support/mpi_main.h"
#include "tests/support/test_paths.h"

namespace chai::testing {
namespace {

LatencyBenchOptions SmallRun() {
  LatencyBenchOptions o;
  o.batch = 2;
  o.input_len = 6;
  o.output_len = 3;
  o.warmup = 0;
  o.iters = 1;
  o.progress = false;
  return o;
}

TEST(MeasureAllReduceSeconds, PositiveOnEveryRank) {
  auto comm = MakeMpiCommunicator(MPI_COMM_WORLD);
  for (int64_t count : {int64_t{1}, int64_t{4096}}) {
    absl::StatusOr<double> s = MeasureAllReduceSeconds(*comm, count, DType::kF32, Device::kCpu, 8, 2, 3);
    ASSERT_TRUE(s.ok()) << s.status();
    EXPECT_TRUE(std::isfinite(*s) && *s > 0 && *s < 1.0) << *s;
  }
  EXPECT_FALSE(MeasureAllReduceSeconds(*comm, 0, DType::kF32, Device::kCpu).ok());
}

TEST(LatencyBench, FloorAddsTheMeasuredAllReduces) {
  auto comm = MakeMpiCommunicator(MPI_COMM_WORLD);
  auto model = LoadTestModel(FixtureDir("llama-mha"), comm.get());
  ASSERT_TRUE(model.ok()) << model.status();
  const LatencyBenchOptions o = SmallRun();
  auto r = RunLatencyBench(*model->engine, o);
  ASSERT_TRUE(r.ok()) << r.status();
  const ModelConfig& c = model->config;
  EXPECT_EQ(r->allreduces_per_step, 2 * c.num_layers + 1);
  EXPECT_EQ(r->allreduce_bytes, int64_t{o.batch} * c.hidden_size * 4);  // fp32
  EXPECT_GT(r->allreduce_s, 0);
  EXPECT_DOUBLE_EQ(r->allreduce_floor_s, r->allreduces_per_step * r->allreduce_s);
  EXPECT_GT(r->memory_floor_s, 0);
  EXPECT_DOUBLE_EQ(r->floor_s, r->memory_floor_s + r->allreduce_floor_s);
}

TEST(LatencyBench, OneRankHasNoAllReduceTerm) {
  auto model = LoadTestModel(FixtureDir("llama-mha"));  // its own single-process communicator
  ASSERT_TRUE(model.ok()) << model.status();
  auto r = RunLatencyBench(*model->engine, SmallRun());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->allreduces_per_step, 0);
  EXPECT_EQ(r->allreduce_s, 0);
  EXPECT_DOUBLE_EQ(r->floor_s, r->memory_floor_s);
}

// The prefill FLOPs of the whole model for llama-style configs, from the config alone: the
// projections (2 x parameters x tokens), causal Q.K^T and P.V (2 x hidden x len^2 per layer and
// sequence), and the LM head on each sequence's last row (its rows padded to a multiple of the
// rank count, as the vocabulary-parallel head stores them).
double ExpectedPrefillFlops(const ModelConfig& c, int world, int batch, int len) {
  const double hidden = c.hidden_size, q = double{1} * c.num_heads * c.head_dim, kv = double{1} * c.num_kv_heads * c.head_dim;
  const double per_layer = hidden * (q + 2 * kv) + q * hidden + 3 * hidden * c.ffn_dim;
  const double vocab_rows = double{1} * ((c.vocab_size + world - 1) / world) * world;
  return 2.0 * per_layer * c.num_layers * batch * len + 2.0 * c.num_layers * q * len * len * batch +
         2.0 * vocab_rows * hidden * batch;
}

TEST(LatencyBench, PrefillFlopsSumToTheModelsOverRanks) {
  auto comm = MakeMpiCommunicator(MPI_COMM_WORLD);
  auto model = LoadTestModel(FixtureDir("llama-mha"), comm.get());
  ASSERT_TRUE(model.ok()) << model.status();
  const LatencyBenchOptions o = SmallRun();
  auto r = RunLatencyBench(*model->engine, o);
  ASSERT_TRUE(r.ok()) << r.status();
  double total = 0;
  MPI_Allreduce(&r->prefill_flops, &total, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  EXPECT_DOUBLE_EQ(total, ExpectedPrefillFlops(model->config, comm->size(), o.batch, o.input_len));
  EXPECT_DOUBLE_EQ(r->prefill_flops_per_s, r->prefill_flops / r->ttft_s);
  EXPECT_EQ(r->gemm_flops_per_s, 0);  // not measured on the CPU
}

}  // namespace
}  // namespace chai::testing

int main(int argc, char** argv) { return chai::testing::RunMpiTests(argc, argv); }
