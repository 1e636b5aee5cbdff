// One process with a head placement (--placement with world_size 1): permuting heads must not
// change the model's output. Each layer's Q/K/V rows and o_proj columns follow the permutation;
// a regression here once left o_proj's columns unpermuted when they covered every column.
#include "gtest/gtest.h"
#include "tests/support/engine_helpers.h"
#include "tests/support/test_paths.h"

namespace chai::testing {
namespace {

class SingleRankPlacement : public ::testing::TestWithParam<std::string> {};

TEST_P(SingleRankPlacement, PermutedHeadsGiveTheSameLogits) {
  const std::string dir = FixtureDir(GetParam());
  auto config = LoadModelConfig(dir);
  ASSERT_TRUE(config.ok()) << config.status();
  // Reverse the heads (MHA) or the KV groups (GQA: a group stays together and in order).
  const int H = config->num_heads, G = config->kv_group_size();
  ParallelLayout layout;
  for (int l = 0; l < config->num_layers; ++l) {
    std::vector<int> perm;
    for (int g = H / G - 1; g >= 0; --g)
      for (int i = 0; i < G; ++i) perm.push_back(g * G + i);
    layout.head_perm.push_back(perm);
  }
  auto permuted = LoadTestModel(dir, nullptr, layout);
  ASSERT_TRUE(permuted.ok()) << permuted.status();
  auto golden = ReadJsonFile(dir + "/golden.json");
  ASSERT_TRUE(golden.ok()) << golden.status();
  for (const Json& c : golden->Find("cases")->as_array()) {
    const std::vector<int32_t> prompt = JsonIds(*c.Find("prompt_ids"));
    SCOPED_TRACE("prompt length " + std::to_string(prompt.size()));
    EXPECT_LE(MaxAbsDiff(PromptLogits(*permuted->engine, prompt), JsonMatrix(*c.Find("logits"))), 1e-4);
  }
}

INSTANTIATE_TEST_SUITE_P(Models, SingleRankPlacement, ::testing::Values("opt-preln", "llama-mha", "llama-gqa"),
                         FixtureParamName());

}  // namespace
}  // namespace chai::testing
