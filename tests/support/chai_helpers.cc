#include "tests/support/chai_helpers.h"

#include "gtest/gtest.h"
#include "runtime/generator.h"

namespace chai::testing {

std::unique_ptr<ChaiPolicy> AttachChai(TestModel& model, const std::vector<int>& local_clusters, ClusterPath path) {
  ChaiOptions options;
  options.local_clusters = local_clusters;
  options.path = path;
  std::vector<std::vector<int>> heads;
  for (const LayerWeights& layer : model.engine->weights().layers) heads.push_back(layer.heads);
  auto policy = std::make_unique<ChaiPolicy>(options, heads, model.engine->weights().local_kv_heads,
                                             model.config.head_dim);
  model.engine->set_attention_policy(policy.get());
  return policy;
}

std::vector<std::vector<int>> LocalRepresentatives(const Sequence& seq, const ModelWeights& weights) {
  std::vector<std::vector<int>> reps;
  for (size_t l = 0; l < weights.layers.size(); ++l) {
    reps.emplace_back();
    for (int s : seq.score_head[l]) reps.back().push_back(weights.layers[l].heads[s]);
  }
  return reps;
}

absl::StatusOr<ChaiRun> RunChai(TestModel& model, const std::vector<int>& schedule,
                                const std::vector<std::vector<int32_t>>& prompts, int new_tokens, ClusterPath path) {
  auto policy = AttachChai(model, schedule, path);
  GenerateOptions options;
  options.max_new_tokens = new_tokens;
  options.keep_prompt_logits = true;
  options.eos_token_id = -1;
  options.chai = policy.get();
  auto result = Generate(*model.engine, prompts, options);
  model.engine->set_attention_policy(nullptr);
  if (!result.ok()) return result.status();
  ChaiRun run;
  run.output_ids = result->output_ids;
  for (size_t i = 0; i < prompts.size(); ++i) {
    const Tensor& logits = result->prompt_logits[i];
    auto& rows = run.prompt_logits.emplace_back();
    for (int64_t r = 0; r < logits.dim(0); ++r) {
      rows.emplace_back(logits.data<float>() + r * logits.dim(1), logits.data<float>() + (r + 1) * logits.dim(1));
    }
    const Sequence& seq = *result->sequences[i];
    run.representatives.push_back(LocalRepresentatives(seq, model.engine->weights()));
    run.k_bytes_per_token.push_back(seq.kv.KBytesPerToken());
  }
  run.free_blocks = model.engine->kv_pool().free_blocks();
  return run;
}

void ExpectChaiGoldens(TestModel& model, const std::string& model_dir, ClusterPath path) {
  auto golden = ReadJsonFile(model_dir + "/golden.json");
  ASSERT_TRUE(golden.ok()) << golden.status();
  int index = 0;
  for (const Json& c : golden->Find("cases")->as_array()) {
    SCOPED_TRACE(::testing::Message() << "golden case " << index++);
    const std::vector<int32_t> prompt = JsonIds(*c.Find("prompt_ids"));
    auto run = RunChai(model, JsonIds(*c.Find("chai_schedule")), {prompt}, 1, path);
    ASSERT_TRUE(run.ok()) << run.status();
    std::vector<std::vector<int>> expected;
    for (const Json& layer : c.Find("chai_representatives")->as_array()) expected.push_back(JsonIds(layer));
    EXPECT_EQ(run->representatives[0], expected);
    const std::vector<float>& last = run->prompt_logits[0].back();
    for (const Json& pair : c.Find("chai_last_logits_top20_fp32")->as_array()) {
      EXPECT_NEAR(last[static_cast<int>(pair.as_array()[0].as_double())], pair.as_array()[1].as_double(), 1e-3);
    }
  }
}

}  // namespace chai::testing
