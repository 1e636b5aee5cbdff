// The CPU engine against Hugging Face transformers outputs for tiny random checkpoints:
// logits at every prompt position (max abs error <= 1e-4) and greedy continuations.
#include <filesystem>

#include "gtest/gtest.h"
#include "tests/support/engine_helpers.h"
#include "tests/support/test_paths.h"

namespace chai::testing {
namespace {

struct FixtureCase {
  std::string dir;
};

void CheckAgainstGolden(const std::string& dir) {
  auto model = LoadTestModel(dir);
  ASSERT_TRUE(model.ok()) << model.status();
  auto golden = ReadJsonFile(dir + "/golden.json");
  ASSERT_TRUE(golden.ok()) << golden.status();
  // Repository fixtures: {"cases": [...]}; ../shared fixtures: a bare list of cases.
  const Json& cases = golden->is_array() ? *golden : *golden->Find("cases");
  ASSERT_FALSE(cases.as_array().empty());
  for (const Json& c : cases.as_array()) {
    const std::vector<int32_t> prompt = JsonIds(*c.Find("prompt_ids"));
    SCOPED_TRACE("prompt length " + std::to_string(prompt.size()));
    const auto expected_logits = JsonMatrix(*c.Find("logits"));
    const auto logits = PromptLogits(*model->engine, prompt);
    EXPECT_LE(MaxAbsDiff(logits, expected_logits), 1e-4);
    const std::vector<int32_t> greedy = JsonIds(*c.Find("greedy"));
    const std::vector<int32_t> expected_new(greedy.begin() + prompt.size(), greedy.end());
    EXPECT_EQ(GreedyTokens(*model->engine, prompt, static_cast<int>(expected_new.size())), expected_new);
  }
}

class RepoFixture : public ::testing::TestWithParam<std::string> {};

TEST_P(RepoFixture, MatchesHuggingFace) { CheckAgainstGolden(FixtureDir(GetParam())); }

INSTANTIATE_TEST_SUITE_P(Models, RepoFixture,
                         ::testing::Values("opt-preln", "opt-postln", "opt-proj", "llama-mha", "llama-gqa",
                                           "llama-bias", "llama-d64", "opt-d64"),
                         FixtureParamName());

// The engine's fused wirings (LinearFused in place of Linear and SiluMulFused, and with kAll of
// AddRmsNorm, the norms folded into the Linears that read them) forced on every step: on the CPU
// LinearFused is the composition of those ops, so the logits must equal the unfused engine's bit
// for bit, for single prompts (prefill at every position, then greedy decode) and for several
// sequences stepped together; the greedy tokens stay the golden ones.
class FusedLinearsFixture : public ::testing::TestWithParam<std::string> {};

TEST_P(FusedLinearsFixture, EqualUnfusedEngine) {
  const std::string dir = FixtureDir(GetParam());
  auto plain = LoadTestModel(dir, nullptr, {}, DType::kF32, Device::kCpu, true, LinearFusion::kNone);
  ASSERT_TRUE(plain.ok()) << plain.status();
  auto golden = ReadJsonFile(dir + "/golden.json");
  ASSERT_TRUE(golden.ok()) << golden.status();
  for (LinearFusion fusion : {LinearFusion::kActivation, LinearFusion::kAll}) {
    SCOPED_TRACE(fusion == LinearFusion::kAll ? "all fusions" : "activation fusion");
    auto fused = LoadTestModel(dir, nullptr, {}, DType::kF32, Device::kCpu, true, fusion, /*fuse_every_step=*/true);
    ASSERT_TRUE(fused.ok()) << fused.status();
    std::vector<std::vector<int32_t>> prompts, next;
    for (const Json& c : golden->Find("cases")->as_array()) {
      const std::vector<int32_t> prompt = JsonIds(*c.Find("prompt_ids"));
      const std::vector<int32_t> greedy = JsonIds(*c.Find("greedy"));
      SCOPED_TRACE("prompt length " + std::to_string(prompt.size()));
      const auto logits = PromptLogits(*fused->engine, prompt);
      ASSERT_FALSE(logits.empty());
      EXPECT_EQ(logits, PromptLogits(*plain->engine, prompt));
      const std::vector<int32_t> expected_new(greedy.begin() + prompt.size(), greedy.end());
      EXPECT_EQ(GreedyTokens(*fused->engine, prompt, static_cast<int>(expected_new.size())), expected_new);
      prompts.push_back(prompt);
      next.push_back(expected_new);
    }
    const auto stepped = SteppedLogits(*fused->engine, prompts, next, 4);
    ASSERT_EQ(stepped.size(), 5u);
    EXPECT_EQ(stepped, SteppedLogits(*plain->engine, prompts, next, 4));
  }
}

INSTANTIATE_TEST_SUITE_P(Models, FusedLinearsFixture,
                         ::testing::Values("opt-preln", "opt-postln", "opt-proj", "llama-mha", "llama-gqa", "llama-bias",
                                           "llama-d64", "opt-d64"),
                         FixtureParamName());

class SharedFixture : public ::testing::TestWithParam<std::string> {};

TEST_P(SharedFixture, MatchesHuggingFace) {
  if (!SharedAvailable()) GTEST_SKIP() << "../shared is absent: skipping the shared fixtures";
  CheckAgainstGolden(SharedDir() + "/fixtures/" + GetParam());
}

INSTANTIATE_TEST_SUITE_P(Models, SharedFixture, ::testing::Values("opt-a", "llama-a"), FixtureParamName());

}  // namespace
}  // namespace chai::testing
