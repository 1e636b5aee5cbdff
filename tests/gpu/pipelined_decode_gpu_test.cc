// Pipelined greedy decoding on the GPU (Engine::EnqueueGreedy with recorded graphs: each step's
// metadata through page-locked staging without waiting for the device, its input tokens the
// previous step's argmax copied on the device) against decoding in turn on the same engine and
// against the Hugging Face goldens: the same tokens and final cache lengths, with no EOS and with
// EOS values that stop sequences at different steps, in fp32 and fp16; steps really queued
// behind the device's work, also those that take new KV blocks. The generator's side alone runs on the CPU (pipelined_decode_test).
// Skips with a reason without a GPU.
#include <string>
#include <tuple>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/device_memory.h"
#include "runtime/generator.h"
#include "tests/support/engine_helpers.h"
#include "tests/support/test_paths.h"

namespace chai::testing {
namespace {

class GpuPipelinedDecode : public ::testing::TestWithParam<std::tuple<std::string, DType>> {
 protected:
  void SetUp() override {
    if (!CudaAvailable()) GTEST_SKIP() << "no CUDA device visible: GPU pipelined decode tests skipped";
  }
};

GreedyRun Greedy(Engine& engine, const std::vector<std::vector<int32_t>>& prompts, int new_tokens, int eos,
                 bool pipeline) {
  auto run = RunGreedy(engine, prompts, new_tokens, eos, pipeline);
  EXPECT_TRUE(run.ok()) << run.status();
  return run.ok() ? *run : GreedyRun{};
}

TEST_P(GpuPipelinedDecode, EqualsInTurnAndGolden) {
  const auto [name, dtype] = GetParam();
  const std::string dir = FixtureDir(name);
  auto model = LoadTestModel(dir, nullptr, {}, dtype, Device::kCuda);  // graphs on, pipelining the default
  ASSERT_TRUE(model.ok()) << model.status();
  auto golden = ReadJsonFile(dir + "/golden.json");
  ASSERT_TRUE(golden.ok()) << golden.status();
  std::vector<std::vector<int32_t>> prompts, golden_new;
  for (const Json& c : golden->Find("cases")->as_array()) {
    prompts.push_back(JsonIds(*c.Find("prompt_ids")));
    const std::vector<int32_t> greedy = JsonIds(*c.Find("greedy"));
    golden_new.emplace_back(greedy.begin() + prompts.back().size(), greedy.end());
  }
  SCOPED_TRACE(DTypeName(dtype));

  // One prompt: the golden continuation (fp16: its first 8 tokens, DESIGN.md's rule).
  const size_t checked = dtype == DType::kF32 ? golden_new[2].size() : 8;
  const GreedyRun one = Greedy(*model->engine, {prompts[2]}, static_cast<int>(golden_new[2].size()), -1, true);
  ASSERT_EQ(one.ids.size(), 1u);
  EXPECT_EQ(std::vector<int32_t>(one.ids[0].begin(), one.ids[0].begin() + checked),
            std::vector<int32_t>(golden_new[2].begin(), golden_new[2].begin() + checked));
  EXPECT_GT(one.times.queued, 0) << "no step was queued without waiting for the device";

  // Every prompt together for 40 tokens (the 64 positions these models hold), without EOS and
  // with EOS values taken from the run itself so that sequences stop at different steps.
  constexpr int kNew = 40;
  const GreedyRun turn = Greedy(*model->engine, prompts, kNew, -1, false);
  const GreedyRun ahead = Greedy(*model->engine, prompts, kNew, -1, true);
  EXPECT_EQ(ahead.ids, turn.ids);
  EXPECT_EQ(ahead.lengths, turn.lengths);
  EXPECT_EQ(turn.times.queued, 0);
  // A shape's first step runs eagerly and its second records the graph, in turn; the in-turn run
  // did both for this batch (one length bucket at 64 positions), so every step queues.
  EXPECT_EQ(ahead.times.queued, kNew - 1);
  ASSERT_EQ(turn.ids.size(), prompts.size());
  for (size_t s = 0; s < prompts.size(); ++s) {
    const int eos = turn.ids[s][5 + 7 * s];
    SCOPED_TRACE("eos " + std::to_string(eos));
    const GreedyRun stop_turn = Greedy(*model->engine, prompts, kNew, eos, false);
    const GreedyRun stop_ahead = Greedy(*model->engine, prompts, kNew, eos, true);
    EXPECT_EQ(stop_ahead.ids, stop_turn.ids);
    EXPECT_EQ(stop_ahead.lengths, stop_turn.lengths);
    EXPECT_LT(stop_turn.ids[s].size(), static_cast<size_t>(kNew));
  }
}

// Blocks of 8 positions: the batch takes new KV blocks every 8 steps, and those steps' block-table
// entries go through the tables' own staging (BlockTables::FlushAsync) while the previous step
// still runs. A wrong or late entry would read another sequence's cache: tokens must not change.
TEST_P(GpuPipelinedDecode, TakesKvBlocksWhileThePreviousStepRuns) {
  const auto [name, dtype] = GetParam();
  EngineOptions options;
  options.capture_decode = true;
  options.block_size = 8;
  auto model = LoadTestModel(FixtureDir(name), options, dtype, Device::kCuda);
  ASSERT_TRUE(model.ok()) << model.status();
  auto golden = ReadJsonFile(FixtureDir(name) + "/golden.json");
  ASSERT_TRUE(golden.ok()) << golden.status();
  std::vector<std::vector<int32_t>> prompts;
  for (const Json& c : golden->Find("cases")->as_array()) prompts.push_back(JsonIds(*c.Find("prompt_ids")));
  SCOPED_TRACE(DTypeName(dtype));
  constexpr int kNew = 40;
  const GreedyRun turn = Greedy(*model->engine, prompts, kNew, -1, false);
  const GreedyRun ahead = Greedy(*model->engine, prompts, kNew, -1, true);
  EXPECT_EQ(ahead.ids, turn.ids);
  EXPECT_EQ(ahead.lengths, turn.lengths);
  EXPECT_EQ(ahead.times.queued, kNew - 1);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, GpuPipelinedDecode,
                         ::testing::Combine(::testing::Values("opt-preln", "llama-gqa", "llama-bias"),
                                            ::testing::Values(DType::kF32, DType::kF16)),
                         [](const auto& info) {
                           std::string n = std::get<0>(info.param) + "_" + DTypeName(std::get<1>(info.param));
                           for (char& c : n) c = c == '-' ? '_' : c;
                           return n;
                         });

}  // namespace
}  // namespace chai::testing
