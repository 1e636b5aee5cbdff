// Greedy generation with the host one step ahead (Engine::EnqueueGreedy and the generator's
// pipelined loop) against generation in turn and the Hugging Face goldens: the same tokens and the
// same final cache lengths, with sequences stopping at EOS at different steps, all at once, and at
// their length. On the CPU the engine runs each step at once (EngineOptions::pipeline_every_step),
// so this covers the generator's side: the step enqueued ahead with the tokens of the step before,
// and the step dropped for a sequence that stopped. engine_gpu_test runs the device side.
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/generator.h"
#include "tests/support/engine_helpers.h"
#include "tests/support/test_paths.h"

namespace chai::testing {
namespace {

// The first new token of `golden_new` from index 2 to the last but one that does not occur before
// it: an EOS that stops that continuation there, before its length would.
int EosStoppingAt(const std::vector<int32_t>& golden_new, size_t* at) {
  for (size_t k = 2; k + 1 < golden_new.size(); ++k) {
    bool earlier = false;
    for (size_t j = 0; j < k; ++j) earlier |= golden_new[j] == golden_new[k];
    if (!earlier) {
      *at = k;
      return golden_new[k];
    }
  }
  return -1;
}

GreedyRun Greedy(Engine& engine, const std::vector<std::vector<int32_t>>& prompts, int new_tokens, int eos,
                    bool pipeline) {
  auto run = RunGreedy(engine, prompts, new_tokens, eos, pipeline);
  EXPECT_TRUE(run.ok()) << run.status();
  return run.ok() ? *run : GreedyRun{};
}

class PipelinedDecode : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    dir_ = FixtureDir(GetParam());
    EngineOptions options;
    options.pipeline_every_step = true;
    auto model = LoadTestModel(dir_, options, DType::kF32, Device::kCpu);
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = std::move(*model);
    auto golden = ReadJsonFile(dir_ + "/golden.json");
    ASSERT_TRUE(golden.ok()) << golden.status();
    for (const Json& c : golden->Find("cases")->as_array()) {
      prompts_.push_back(JsonIds(*c.Find("prompt_ids")));
      const std::vector<int32_t> greedy = JsonIds(*c.Find("greedy"));
      golden_new_.emplace_back(greedy.begin() + prompts_.back().size(), greedy.end());
    }
  }

  std::string dir_;
  TestModel model_;
  std::vector<std::vector<int32_t>> prompts_, golden_new_;
};

// One prompt at a time: the golden continuation, and with an EOS inside it the continuation up to
// and including the EOS, the cache rolled back to where in-turn decoding leaves it, and one step
// more than in turn (the step enqueued ahead, which the stop made useless).
TEST_P(PipelinedDecode, OnePromptMatchesGoldenAndStopsAtEos) {
  for (size_t c = 0; c < prompts_.size(); ++c) {
    SCOPED_TRACE("case " + std::to_string(c));
    const int n = static_cast<int>(golden_new_[c].size());
    const GreedyRun plain = Greedy(*model_.engine, {prompts_[c]}, n, -1, true);
    ASSERT_EQ(plain.ids.size(), 1u);
    EXPECT_EQ(plain.ids[0], golden_new_[c]);
    EXPECT_EQ(plain.lengths[0], static_cast<int64_t>(prompts_[c].size() + n - 1));
    EXPECT_EQ(plain.times.fed, n - 2);  // every step but the first follows one still unread

    size_t at = 0;
    const int eos = EosStoppingAt(golden_new_[c], &at);
    if (eos < 0) continue;
    const GreedyRun turn = Greedy(*model_.engine, {prompts_[c]}, n, eos, false);
    const GreedyRun ahead = Greedy(*model_.engine, {prompts_[c]}, n, eos, true);
    const std::vector<int32_t> expected(golden_new_[c].begin(), golden_new_[c].begin() + at + 1);
    EXPECT_EQ(turn.ids[0], expected);
    EXPECT_EQ(ahead.ids[0], expected);
    EXPECT_EQ(ahead.lengths, turn.lengths);
    EXPECT_EQ(turn.times.fed, 0);
    EXPECT_EQ(ahead.steps, turn.steps + 1);
  }
}

// All prompts together, with no EOS, with an EOS that stops one sequence early, and with one that
// stops each at a different step (or never): the tokens and cache lengths of decoding in turn.
TEST_P(PipelinedDecode, BatchEqualsInTurn) {
  const int n = static_cast<int>(golden_new_[0].size());
  size_t at = 0;
  std::vector<int> eos_values = {-1, EosStoppingAt(golden_new_[0], &at)};
  for (const auto& g : golden_new_) eos_values.push_back(g[g.size() / 2]);
  for (int eos : eos_values) {
    SCOPED_TRACE("eos " + std::to_string(eos));
    const GreedyRun turn = Greedy(*model_.engine, prompts_, n, eos, false);
    const GreedyRun ahead = Greedy(*model_.engine, prompts_, n, eos, true);
    EXPECT_EQ(ahead.ids, turn.ids);
    EXPECT_EQ(ahead.lengths, turn.lengths);
    if (eos < 0) {
      for (const auto& ids : turn.ids) EXPECT_EQ(static_cast<int>(ids.size()), n);
      EXPECT_EQ(ahead.times.fed, n - 2);
    }
  }
}

// Pipelining off in the engine's options: the generator decodes in turn even when asked to.
TEST_P(PipelinedDecode, EngineOptionOffDecodesInTurn) {
  EngineOptions options;
  options.pipeline_every_step = true;
  options.pipeline_greedy = false;
  auto model = LoadTestModel(dir_, options, DType::kF32, Device::kCpu);
  ASSERT_TRUE(model.ok()) << model.status();
  const GreedyRun g = Greedy(*model->engine, {prompts_[0]}, static_cast<int>(golden_new_[0].size()), -1, true);
  EXPECT_EQ(g.ids[0], golden_new_[0]);
  EXPECT_EQ(g.times.fed, 0);
}

INSTANTIATE_TEST_SUITE_P(Models, PipelinedDecode, ::testing::Values("opt-preln", "llama-gqa"), FixtureParamName());

}  // namespace
}  // namespace chai::testing
