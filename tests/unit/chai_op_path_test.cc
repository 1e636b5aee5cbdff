// CHAI membership through the ChaiCluster op (ClusterPath::kOp, the path CUDA engines take, with
// results applied at the end of the step) against the host path, on the CPU engine: identical
// representatives, greedy tokens and prompt logits bit for bit, the same K bytes kept and the
// same blocks returned to the pool; short prompts cluster at the 5th token; the goldens hold.
#include <algorithm>

#include "gtest/gtest.h"
#include "runtime/chai/device_clustering.h"
#include "tests/support/chai_helpers.h"
#include "tests/support/test_paths.h"

namespace chai::testing {
namespace {

class ChaiOpPath : public ::testing::TestWithParam<std::string> {};

TEST_P(ChaiOpPath, EqualsHostPath) {
  const std::string dir = FixtureDir(GetParam());
  auto golden = ReadJsonFile(dir + "/golden.json");
  ASSERT_TRUE(golden.ok()) << golden.status();
  for (const Json& entry : golden->Find("chai")->as_array()) {
    const std::vector<int> schedule = JsonIds(*entry.Find("schedule"));
    SCOPED_TRACE(::testing::Message() << "schedule " << entry.Find("schedule")->Dump());
    std::vector<std::vector<int32_t>> prompts;
    std::vector<std::vector<std::vector<int>>> golden_reps;
    for (const Json& c : entry.Find("cases")->as_array()) {
      prompts.push_back(JsonIds(*c.Find("prompt_ids")));
      auto& reps = golden_reps.emplace_back();
      for (const Json& layer : c.Find("representatives")->as_array()) reps.push_back(JsonIds(layer));
    }
    prompts.push_back({3, 4});  // clusters during decode, at the 5th token
    auto host_model = LoadTestModel(dir);
    auto op_model = LoadTestModel(dir);
    ASSERT_TRUE(host_model.ok() && op_model.ok());
    auto host = RunChai(*host_model, schedule, prompts, 6, ClusterPath::kHost);
    auto op = RunChai(*op_model, schedule, prompts, 6, ClusterPath::kOp);
    ASSERT_TRUE(host.ok()) << host.status();
    ASSERT_TRUE(op.ok()) << op.status();
    EXPECT_EQ(op->representatives, host->representatives);
    for (size_t i = 0; i < golden_reps.size(); ++i) EXPECT_EQ(op->representatives[i], golden_reps[i]);
    EXPECT_EQ(op->output_ids, host->output_ids);
    for (size_t i = 0; i < prompts.size(); ++i) EXPECT_EQ(MaxAbsDiff(op->prompt_logits[i], host->prompt_logits[i]), 0);
    EXPECT_EQ(op->k_bytes_per_token, host->k_bytes_per_token);
    EXPECT_EQ(op->free_blocks, host->free_blocks);
  }
}

INSTANTIATE_TEST_SUITE_P(Models, ChaiOpPath,
                         ::testing::Values("opt-preln", "opt-postln", "opt-proj", "llama-mha", "llama-gqa",
                                           "llama-bias", "llama-d64", "opt-d64"),
                         FixtureParamName());

// A short prompt keeps full K until the 5th token; the op's membership lands at that step's end.
TEST(ChaiOpPathSteps, ShortPromptClustersAtTheFifthToken) {
  auto model = LoadTestModel(FixtureDir("opt-preln"));
  ASSERT_TRUE(model.ok());
  auto policy = AttachChai(*model, {4, 1}, ClusterPath::kOp);
  auto seq = *model->engine->NewSequence();
  policy->Enable(seq.get());
  const int64_t full_k = seq->kv.KBytesPerToken();
  std::vector<int32_t> tokens = {7, 8};
  for (int step = 0; step < 5; ++step) {
    std::vector<StepInput> in = {{seq.get(), tokens}};
    ASSERT_TRUE(model->engine->Forward(absl::MakeSpan(in), false).ok());
    tokens = {static_cast<int32_t>(10 + step)};
    if (seq->length() < 5) {
      EXPECT_EQ(seq->kv.KBytesPerToken(), full_k) << "length " << seq->length();
      EXPECT_FALSE(seq->membership_fixed);
      EXPECT_EQ(seq->score_head[1], std::vector<int>({0, 1, 2, 3}));
    } else {
      EXPECT_TRUE(seq->membership_fixed);
      EXPECT_EQ(seq->kv.KBytesPerToken(), 5 * 16 * 4);  // layer 0 dense (4 heads), layer 1 one cluster
      EXPECT_EQ(seq->score_head[1], std::vector<int>(4, seq->score_head[1][0]));
    }
  }
}

// The trained model (12 heads x 32, 8 layers) through the op path on the CPU, as the CUDA
// engine runs it (chai_cluster_gpu_test's ChaiDevicePathOptTinyDocs): the goldens' representatives
// and last-position logits.
TEST(ChaiOpPathOptTinyDocs, MatchesGolden) {
  if (!SharedAvailable()) GTEST_SKIP() << "../shared is absent: skipping opt-tiny-docs";
  const std::string dir = SharedDir() + "/models/opt-tiny-docs";
  auto model = LoadTestModel(dir);
  ASSERT_TRUE(model.ok()) << model.status();
  ExpectChaiGoldens(*model, dir, ClusterPath::kOp);
}

// The op reads every KV head's first K block; a sequence whose K head is gone before its layer is
// clustered is a caller's bug, named on the host (the kernel could only trap).
TEST(DeviceClusteringDeathTest, KHeadDroppedBeforeClustering) {
  KvBlockPool pool(64, 16, 8, DType::kF32, Device::kCpu);
  BlockTables tables(2, 1, 2, 2, 4, Device::kCpu);
  auto row = tables.AcquireRow();
  ASSERT_TRUE(row.ok());
  Sequence seq(&pool, &tables, *row, 1, 2, 2);
  ASSERT_TRUE(seq.kv.Reserve(5).ok());
  seq.kv.DropK(0, 1);
  DeviceClustering clustering({{0, 1}});
  EXPECT_DEATH(clustering.Add(&seq, 0, Tensor(), Tensor::Zeros({5, 16}, DType::kF32), 1),
               "a K head was dropped before the layer was clustered");
}

}  // namespace
}  // namespace chai::testing
