// CHAI clustering on the GPU (the ChaiCluster op, and the engine's device path that uses it).
//
// Op level, on random inputs of the shapes CHAI meets (8 to 128 heads, MHA and GQA, head dims 64
// and 128, every cluster count in one batch, queries split between an early buffer and the step's
// rows, fp32/fp16/bf16 with the reference fed the exact device values): features within one float
// ulp of runtime/chai's (and bit-equal in nearly all values: only the device's double exp may
// differ in its last bit), representatives identical to runtime/chai's from the same inputs (and
// always to runtime/chai's clustering of the device's own features), exact ties, rows outside the
// batch untouched. Engine level: the device path gives the CPU engine's representatives, tokens
// and logits and the goldens' representatives (fp32), the host path's results on the same GPU
// (every dtype; prompts that cluster during decode, prompts fed in chunks), identity maps for a
// sequence that reuses a clustered sequence's row, and the opt-tiny-docs golden. Skips with a
// reason without a GPU.
#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>

#include "gtest/gtest.h"
#include "kernels/ops.h"
#include "runtime/generator.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/support/chai_cluster_cases.h"
#include "tests/support/chai_helpers.h"
#include "tests/support/test_paths.h"

namespace chai::testing {
namespace {

using gpu_test::GpuTest;

std::string Describe(const ClusterCase& c, DType dtype) {
  return std::string(DTypeName(dtype)) + " heads " + std::to_string(c.heads) + " kv_heads " +
         std::to_string(c.kv_heads) + " d " + std::to_string(c.head_dim) + " k " + std::to_string(c.clusters) +
         " saved " + std::to_string(c.saved);
}

// Distance in units in the last place between two finite non-negative floats.
int64_t UlpDistance(float a, float b) {
  if (!std::isfinite(a) || !std::isfinite(b) || a < 0 || b < 0) return INT64_MAX;
  int32_t ia, ib;
  std::memcpy(&ia, &a, 4);
  std::memcpy(&ib, &b, 4);
  return std::llabs(int64_t{ia} - ib);
}

struct FeatureStats {
  int64_t values = 0, inexact = 0;  // feature values, those not bit-equal to the reference
  int cases = 0, cases_inexact = 0;
};

// One op call on the GPU over `cases` (their values already rounded to `dtype`).
void CheckOnGpu(std::vector<ClusterCase> cases, DType dtype, std::mt19937& rng, FeatureStats* stats) {
  ClusterBatch b = MakeClusterBatch(cases, dtype, Device::kCuda, rng);
  const int heads = cases.front().heads, n = static_cast<int>(cases.size());
  Tensor features = gpu_test::Poisoned({n, heads, 25}, DType::kF32);
  ops::ChaiCluster(b.problems, b.kv, b.order, &b.maps, &features);
  const std::vector<float> got_all = features.ToFloats();
  for (int c = 0; c < n; ++c) {
    SCOPED_TRACE(Describe(cases[c], dtype));
    const std::vector<float> ref = ReferenceFeatures(cases[c]);
    const float* got = got_all.data() + int64_t{c} * heads * 25;
    int64_t worst = 0, inexact = 0;
    for (size_t i = 0; i < ref.size(); ++i) {
      const int64_t ulps = UlpDistance(got[i], ref[i]);
      worst = std::max(worst, ulps);
      inexact += ulps != 0;
    }
    EXPECT_LE(worst, 1) << "features further than one ulp from runtime/chai's";
    stats->values += static_cast<int64_t>(ref.size());
    stats->inexact += inexact;
    ++stats->cases;
    const std::vector<int> reps = IntRow(b.maps, b.rows[c]);
    // The clustering itself is exact: runtime/chai on the device's own features.
    EXPECT_EQ(reps, RepresentativesFromFeatures(got, cases[c]));
    if (inexact == 0) {
      EXPECT_EQ(reps, ReferenceRepresentatives(cases[c]));
    } else {
      ++stats->cases_inexact;
      if (reps != ReferenceRepresentatives(cases[c])) {
        std::printf("note: %s: a last-bit exp difference changed the membership\n", Describe(cases[c], dtype).c_str());
      }
    }
  }
  const std::set<int> used(b.rows.begin(), b.rows.end());
  for (int r = 0; r < b.maps.dim(0); ++r) {
    if (used.count(r) == 0) {
      EXPECT_EQ(IntRow(b.maps, r), std::vector<int>(heads, -7)) << "row " << r;
    }
  }
}

void Report(const FeatureStats& s, const char* what) {
  std::printf("%s: %" PRId64 " of %" PRId64 " feature values not bit-equal to runtime/chai's (%d of %d cases)\n", what,
              s.inexact, s.values, s.cases_inexact, s.cases);
  // A handful of last-bit differences is exp; many would mean a different order of operations.
  EXPECT_LE(s.inexact * 1000, s.values) << what;
}

class ChaiClusterGpu : public GpuTest {};

TEST_F(ChaiClusterGpu, MatchesRuntimeOnRandomInputs) {
  std::mt19937 rng(2024);
  const std::vector<std::tuple<int, int, int>> shapes = {{8, 8, 64},     {8, 2, 128},    {32, 32, 128}, {32, 8, 64},
                                                         {40, 40, 64},   {40, 8, 128},   {64, 64, 128}, {64, 8, 64},
                                                         {128, 128, 64}, {128, 16, 128}, {12, 4, 16}};
  for (DType dtype : gpu_test::FloatTypes()) {
    FeatureStats stats;
    for (auto [heads, kv_heads, d] : shapes) {
      std::vector<ClusterCase> cases;  // every cluster count, one sequence each, in one call
      for (int k = 1; k <= heads; ++k) {
        ClusterCase c = RandomCase(rng, heads, kv_heads, d, k, k % 5, k % 2 == 0 ? 0 : 4);
        RoundTo(&c, dtype);
        cases.push_back(std::move(c));
      }
      CheckOnGpu(std::move(cases), dtype, rng, &stats);
    }
    Report(stats, DTypeName(dtype));
  }
}

TEST_F(ChaiClusterGpu, MatchesRuntimeOnExactTies) {
  std::mt19937 rng(99);
  for (DType dtype : gpu_test::FloatTypes()) {
    FeatureStats stats;
    for (auto [heads, kv_heads, d] : {std::tuple{16, 16, 64}, {16, 4, 128}, {40, 8, 64}, {128, 128, 64}}) {
      std::vector<ClusterCase> cases;
      for (int k : {1, 2, 3, 5, heads / 2, heads - 2, heads - 1}) {
        ClusterCase pairs = RandomCase(rng, heads, kv_heads, d, k, k % 5);
        CopyHead(&pairs, 0, 5);
        CopyHead(&pairs, 3, 9);
        CopyHead(&pairs, 9, 12);
        CopyHead(&pairs, heads - 1, 2);
        ClusterCase same = RandomCase(rng, heads, kv_heads, d, k, 0);
        for (int h = 1; h < heads; ++h) CopyHead(&same, 0, h);
        ClusterCase two = RandomCase(rng, heads, kv_heads, d, k, 4);
        for (int h = 2; h < heads; ++h) CopyHead(&two, h % 2, h);
        for (ClusterCase* c : {&pairs, &same, &two}) {
          RoundTo(c, dtype);
          cases.push_back(*c);
        }
      }
      CheckOnGpu(std::move(cases), dtype, rng, &stats);
    }
    Report(stats, DTypeName(dtype));
  }
}

// ---- Engine level --------------------------------------------------------------------------

// The golden schedules of a fixture with their prompts.
struct Schedules {
  std::vector<std::vector<int>> schedule;
  std::vector<std::vector<std::vector<int32_t>>> prompts;
  std::vector<std::vector<std::vector<std::vector<int>>>> golden_reps;
};

Schedules ReadSchedules(const std::string& dir) {
  Schedules s;
  auto golden = ReadJsonFile(dir + "/golden.json");
  EXPECT_TRUE(golden.ok()) << golden.status();
  if (!golden.ok()) return s;
  for (const Json& entry : golden->Find("chai")->as_array()) {
    s.schedule.push_back(JsonIds(*entry.Find("schedule")));
    auto& prompts = s.prompts.emplace_back();
    auto& reps = s.golden_reps.emplace_back();
    for (const Json& c : entry.Find("cases")->as_array()) {
      prompts.push_back(JsonIds(*c.Find("prompt_ids")));
      auto& layers = reps.emplace_back();
      for (const Json& layer : c.Find("representatives")->as_array()) layers.push_back(JsonIds(layer));
    }
  }
  return s;
}

class ChaiDevicePath : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (!CudaAvailable()) GTEST_SKIP() << "no CUDA device visible: GPU CHAI tests skipped";
  }
};

// fp32, the golden prompts: the device path equals the CPU engine's host path and the goldens.
TEST_P(ChaiDevicePath, MatchesCpuEngine) {
  const std::string dir = FixtureDir(GetParam());
  const Schedules s = ReadSchedules(dir);
  for (size_t e = 0; e < s.schedule.size(); ++e) {
    SCOPED_TRACE(::testing::Message() << "schedule " << e);
    auto cpu_model = LoadTestModel(dir);
    auto gpu_model = LoadTestModel(dir, nullptr, {}, DType::kF32, Device::kCuda);
    ASSERT_TRUE(cpu_model.ok() && gpu_model.ok());
    auto cpu = RunChai(*cpu_model, s.schedule[e], s.prompts[e], 6, ClusterPath::kHost);
    auto gpu = RunChai(*gpu_model, s.schedule[e], s.prompts[e], 6, ClusterPath::kAuto);
    ASSERT_TRUE(cpu.ok()) << cpu.status();
    ASSERT_TRUE(gpu.ok()) << gpu.status();
    EXPECT_EQ(gpu->representatives, cpu->representatives);
    EXPECT_EQ(gpu->representatives, s.golden_reps[e]);
    EXPECT_EQ(gpu->output_ids, cpu->output_ids);
    for (size_t i = 0; i < s.prompts[e].size(); ++i) {
      EXPECT_LE(MaxAbsDiff(gpu->prompt_logits[i], cpu->prompt_logits[i]), 1e-4) << "prompt " << i;
    }
    EXPECT_EQ(gpu->k_bytes_per_token, cpu->k_bytes_per_token);
    EXPECT_EQ(gpu->free_blocks, cpu->free_blocks);
  }
}

// Every dtype, with a prompt that clusters during decode: the device path equals the host path
// on the same GPU (the same q and K values reach both).
TEST_P(ChaiDevicePath, MatchesHostPathOnTheSameGpu) {
  const std::string dir = FixtureDir(GetParam());
  const Schedules s = ReadSchedules(dir);
  for (DType dtype : gpu_test::FloatTypes()) {
    for (size_t e = 0; e < s.schedule.size(); ++e) {
      SCOPED_TRACE(::testing::Message() << DTypeName(dtype) << " schedule " << e);
      std::vector<std::vector<int32_t>> prompts = s.prompts[e];
      prompts.push_back({3, 4});
      prompts.push_back({31, 32, 33, 34, 35, 36, 37, 38, 39});
      auto host_model = LoadTestModel(dir, nullptr, {}, dtype, Device::kCuda);
      auto op_model = LoadTestModel(dir, nullptr, {}, dtype, Device::kCuda);
      ASSERT_TRUE(host_model.ok() && op_model.ok());
      auto host = RunChai(*host_model, s.schedule[e], prompts, 6, ClusterPath::kHost);
      auto op = RunChai(*op_model, s.schedule[e], prompts, 6, ClusterPath::kAuto);
      ASSERT_TRUE(host.ok()) << host.status();
      ASSERT_TRUE(op.ok()) << op.status();
      EXPECT_EQ(op->representatives, host->representatives);
      EXPECT_EQ(op->output_ids, host->output_ids);
      for (size_t i = 0; i < prompts.size(); ++i) {
        EXPECT_LE(MaxAbsDiff(op->prompt_logits[i], host->prompt_logits[i]), 1e-5) << "prompt " << i;
      }
      EXPECT_EQ(op->k_bytes_per_token, host->k_bytes_per_token);
      EXPECT_EQ(op->free_blocks, host->free_blocks);
    }
  }
}

// Prompts fed in chunks (early queries kept on the device across passes, then read with the
// clustering pass's rows), two sequences in a batch with different chunkings, against the host
// path on the same GPU.
TEST_P(ChaiDevicePath, ChunkedPromptsMatchHostPath) {
  const std::string dir = FixtureDir(GetParam());
  const Schedules s = ReadSchedules(dir);
  const std::vector<std::vector<int32_t>> prompts = {{5, 6, 7, 8, 9, 10, 11}, {12, 13, 14, 15, 16, 17}};
  const std::vector<std::vector<int>> chunks = {{2, 1, 4}, {4, 2}};
  auto run = [&](TestModel& model, ClusterPath path) {
    auto policy = AttachChai(model, s.schedule.front(), path);
    std::vector<std::unique_ptr<Sequence>> seqs;
    for (size_t i = 0; i < prompts.size(); ++i) {
      seqs.push_back(*model.engine->NewSequence());
      policy->Enable(seqs.back().get());
    }
    std::vector<size_t> fed(prompts.size(), 0);
    std::vector<float> last_logits;
    for (size_t step = 0; step < 3; ++step) {
      std::vector<StepInput> in;
      for (size_t i = 0; i < prompts.size(); ++i) {
        if (step >= chunks[i].size()) continue;
        in.push_back({seqs[i].get(), std::vector<int32_t>(prompts[i].begin() + fed[i],
                                                          prompts[i].begin() + fed[i] + chunks[i][step])});
        fed[i] += chunks[i][step];
      }
      auto logits = model.engine->Forward(absl::MakeSpan(in), false);
      EXPECT_TRUE(logits.ok());
      if (logits.ok()) last_logits = logits->ToFloats();
    }
    std::vector<std::vector<std::vector<int>>> reps;
    for (const auto& seq : seqs) {
      EXPECT_TRUE(seq->membership_fixed);
      reps.push_back(LocalRepresentatives(*seq, model.engine->weights()));
    }
    model.engine->set_attention_policy(nullptr);
    return std::pair{reps, last_logits};
  };
  auto host_model = LoadTestModel(dir, nullptr, {}, DType::kF32, Device::kCuda);
  auto op_model = LoadTestModel(dir, nullptr, {}, DType::kF32, Device::kCuda);
  ASSERT_TRUE(host_model.ok() && op_model.ok());
  const auto [host_reps, host_logits] = run(*host_model, ClusterPath::kHost);
  const auto [op_reps, op_logits] = run(*op_model, ClusterPath::kAuto);
  EXPECT_EQ(op_reps, host_reps);
  EXPECT_LE(MaxAbsDiff({op_logits}, {host_logits}), 1e-5);
}

// A sequence that reuses the row of a clustered one: a dense one gets identity maps (the host
// mirror of the maps learnt what the device path wrote) and every K block; a CHAI one clusters
// as on a fresh row. After a one-step CHAI run the K heads it dropped are still waiting for a
// flush when the next sequence takes the row and blocks at the same table entries: both reach
// the device in one scatter, where the stale -1 once won (the next sequence read zeros for K, or
// the clustering kernel trapped; found on opt-tiny-docs).
TEST_P(ChaiDevicePath, ReusedRow) {
  const std::string dir = FixtureDir(GetParam());
  const Schedules s = ReadSchedules(dir);
  const std::vector<int32_t> prompt = {21, 22, 23, 24, 25, 26};
  auto fresh = LoadTestModel(dir, nullptr, {}, DType::kF32, Device::kCuda);
  ASSERT_TRUE(fresh.ok());
  const auto expected = PromptLogits(*fresh->engine, prompt);
  const auto expected_tokens = GreedyTokens(*fresh->engine, prompt, 6);
  for (int chai_steps : {4, 1}) {
    SCOPED_TRACE(::testing::Message() << "CHAI run of " << chai_steps << " new tokens before");
    auto reused = LoadTestModel(dir, nullptr, {}, DType::kF32, Device::kCuda);
    ASSERT_TRUE(reused.ok());
    auto first = RunChai(*reused, s.schedule.front(), {prompt}, chai_steps, ClusterPath::kAuto);
    ASSERT_TRUE(first.ok()) << first.status();
    EXPECT_LE(MaxAbsDiff(PromptLogits(*reused->engine, prompt), expected), 1e-5) << "dense on the reused row";
    EXPECT_EQ(GreedyTokens(*reused->engine, prompt, 6), expected_tokens);
    ASSERT_TRUE(RunChai(*reused, s.schedule.front(), {prompt}, chai_steps, ClusterPath::kAuto).ok());
    auto again = RunChai(*reused, s.schedule.front(), {prompt}, chai_steps, ClusterPath::kAuto);
    ASSERT_TRUE(again.ok()) << again.status();
    EXPECT_EQ(again->representatives, first->representatives) << "CHAI on the reused row";
    EXPECT_LE(MaxAbsDiff(again->prompt_logits[0], first->prompt_logits[0]), 1e-5);
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ChaiDevicePath,
                         ::testing::Values("opt-preln", "opt-postln", "opt-proj", "llama-mha", "llama-gqa",
                                           "llama-bias", "llama-d64", "opt-d64"),
                         FixtureParamName());

// The trained checkpoint: the device path reproduces the golden representatives.
// The cases run one after another on one engine, so a sequence reuses the block-table row of
// the previous one, whose dropped K heads were cleared there.
TEST(ChaiDevicePathOptTinyDocs, MatchesGolden) {
  if (!CudaAvailable()) GTEST_SKIP() << "no CUDA device visible";
  if (!SharedAvailable()) GTEST_SKIP() << "../shared is absent: skipping opt-tiny-docs";
  const std::string dir = SharedDir() + "/models/opt-tiny-docs";
  auto model = LoadTestModel(dir, nullptr, {}, DType::kF32, Device::kCuda);
  ASSERT_TRUE(model.ok()) << model.status();
  ExpectChaiGoldens(*model, dir, ClusterPath::kAuto);
}

}  // namespace
}  // namespace chai::testing
