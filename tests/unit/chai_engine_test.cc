// CHAI in the engine against the Python reference of the same semantics
// (tests/fixtures/chai_reference.py, scikit-learn clustering): identical representatives,
// prefill logits within 1e-4, identical greedy continuations; short prompts cluster at the
// 5th token; K is stored for representatives only; mixed batches; opt-tiny-docs golden.
#include "gtest/gtest.h"
#include "runtime/generator.h"
#include "tests/support/chai_helpers.h"
#include "tests/support/test_paths.h"

namespace chai::testing {
namespace {

class ChaiFixture : public ::testing::TestWithParam<std::string> {};

TEST_P(ChaiFixture, MatchesPythonReference) {
  const std::string dir = FixtureDir(GetParam());
  auto golden = ReadJsonFile(dir + "/golden.json");
  ASSERT_TRUE(golden.ok()) << golden.status();
  const Json* schedules = golden->Find("chai");
  ASSERT_NE(schedules, nullptr);
  for (const Json& entry : schedules->as_array()) {
    std::vector<int> schedule = JsonIds(*entry.Find("schedule"));
    auto model = LoadTestModel(dir);
    ASSERT_TRUE(model.ok()) << model.status();
    auto policy = AttachChai(*model, schedule);
    for (const Json& c : entry.Find("cases")->as_array()) {
      const std::vector<int32_t> prompt = JsonIds(*c.Find("prompt_ids"));
      const std::vector<int32_t> greedy = JsonIds(*c.Find("greedy"));
      SCOPED_TRACE(::testing::Message() << "schedule " << entry.Find("schedule")->Dump() << " prompt length "
                                        << prompt.size());
      GenerateOptions options;
      options.max_new_tokens = static_cast<int>(greedy.size() - prompt.size());
      options.keep_prompt_logits = true;
      options.chai = policy.get();
      auto result = Generate(*model->engine, {prompt}, options);
      ASSERT_TRUE(result.ok()) << result.status();
      EXPECT_EQ(result->output_ids[0], std::vector<int32_t>(greedy.begin() + prompt.size(), greedy.end()));
      const Tensor& logits = result->prompt_logits[0];
      std::vector<std::vector<float>> rows;
      for (int64_t r = 0; r < logits.dim(0); ++r) {
        rows.emplace_back(logits.data<float>() + r * logits.dim(1), logits.data<float>() + (r + 1) * logits.dim(1));
      }
      EXPECT_LE(MaxAbsDiff(rows, JsonMatrix(*c.Find("logits"))), 1e-4);
      const Sequence& seq = *result->sequences[0];
      std::vector<std::vector<int>> expected_reps;
      for (const Json& layer : c.Find("representatives")->as_array()) expected_reps.push_back(JsonIds(layer));
      EXPECT_EQ(LocalRepresentatives(seq, model->engine->weights()), expected_reps);

      // Memory: K only for the KV heads representatives read; V for every head.
      int64_t k_heads = 0;
      const int group = model->config.kv_group_size();
      for (const auto& layer : expected_reps) {
        std::set<int> kv;
        for (int r : layer) kv.insert(r / group);
        k_heads += static_cast<int64_t>(kv.size());
      }
      const int64_t unit = model->config.head_dim * sizeof(float);
      EXPECT_EQ(seq.kv.KBytesPerToken(), k_heads * unit);
      EXPECT_EQ(seq.kv.VBytesPerToken(), int64_t{model->config.num_layers} * model->config.num_kv_heads * unit);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Models, ChaiFixture,
                         ::testing::Values("opt-preln", "opt-postln", "opt-proj", "llama-mha", "llama-gqa",
                                           "llama-bias", "llama-d64", "opt-d64"),
                         FixtureParamName());

// A short prompt keeps full K until the 5th token arrives, then drops the non-representatives'.
TEST(Chai, ShortPromptClustersAtTheFifthToken) {
  auto model = LoadTestModel(FixtureDir("opt-preln"));
  ASSERT_TRUE(model.ok());
  auto policy = AttachChai(*model, {4, 1});
  auto seq = *model->engine->NewSequence();
  policy->Enable(seq.get());
  const int64_t full_k = seq->kv.KBytesPerToken();
  std::vector<int32_t> tokens = {7, 8, 9};
  for (int step = 0; step < 4; ++step) {
    std::vector<StepInput> in = {{seq.get(), tokens}};
    ASSERT_TRUE(model->engine->Forward(absl::MakeSpan(in), false).ok());
    tokens = {static_cast<int32_t>(10 + step)};
    if (seq->length() < 5) {
      EXPECT_EQ(seq->kv.KBytesPerToken(), full_k) << "length " << seq->length();
      EXPECT_FALSE(seq->membership_fixed);
    } else {
      EXPECT_TRUE(seq->membership_fixed);
      // Layer 0 dense (4 heads), layer 1 one cluster: 5 K heads of 16 floats.
      EXPECT_EQ(seq->kv.KBytesPerToken(), 5 * 16 * 4);
    }
  }
}

// Sequences in one batch (dense and CHAI, long and short prompts) equal their solo runs.
TEST(Chai, MixedBatchEqualsSoloRuns) {
  const std::string dir = FixtureDir("llama-gqa");
  auto model = LoadTestModel(dir);
  ASSERT_TRUE(model.ok());
  auto policy = AttachChai(*model, {8, 4, 2});
  const std::vector<std::vector<int32_t>> prompts = {{5, 6, 7, 8, 9, 10, 11}, {12, 13}, {14, 15, 16, 17, 18, 19}};
  const std::vector<bool> use_chai = {true, true, false};
  auto run = [&](const std::vector<size_t>& which) {
    std::vector<std::unique_ptr<Sequence>> seqs;
    std::vector<std::vector<float>> last_logits(prompts.size());
    std::vector<std::vector<int32_t>> tokens(prompts.size());
    for (size_t i : which) {
      seqs.push_back(*model->engine->NewSequence());
      if (use_chai[i]) policy->Enable(seqs.back().get());
      tokens[i] = prompts[i];
    }
    for (int step = 0; step < 6; ++step) {  // prefill, then 5 decode steps (greedy)
      std::vector<StepInput> in;
      for (size_t j = 0; j < which.size(); ++j) in.push_back({seqs[j].get(), tokens[which[j]]});
      auto logits = model->engine->Forward(absl::MakeSpan(in), false);
      EXPECT_TRUE(logits.ok());
      const int64_t vocab = logits->dim(1);
      for (size_t j = 0; j < which.size(); ++j) {
        const float* row = logits->data<float>() + j * vocab;
        last_logits[which[j]].assign(row, row + vocab);
        tokens[which[j]] = {static_cast<int32_t>(std::max_element(row, row + vocab) - row)};
      }
    }
    return last_logits;
  };
  const auto batched = run({0, 1, 2});
  for (size_t i = 0; i < prompts.size(); ++i) {
    const auto solo = run({i});
    EXPECT_LE(MaxAbsDiff({batched[i]}, {solo[i]}), 1e-5) << "sequence " << i;
  }
}

TEST(Chai, OptTinyDocsGolden) {
  if (!SharedAvailable()) GTEST_SKIP() << "../shared is absent: skipping opt-tiny-docs";
  const std::string dir = SharedDir() + "/models/opt-tiny-docs";
  auto golden = ReadJsonFile(dir + "/golden.json");
  ASSERT_TRUE(golden.ok());
  auto model = LoadTestModel(dir);
  ASSERT_TRUE(model.ok());
  for (const Json& c : golden->Find("cases")->as_array()) {
    auto policy = AttachChai(*model, JsonIds(*c.Find("chai_schedule")));
    const std::vector<int32_t> prompt = JsonIds(*c.Find("prompt_ids"));
    GenerateOptions options;
    options.max_new_tokens = 1;
    options.keep_prompt_logits = true;
    options.chai = policy.get();
    auto result = Generate(*model->engine, {prompt}, options);
    ASSERT_TRUE(result.ok());
    std::vector<std::vector<int>> expected;
    for (const Json& layer : c.Find("chai_representatives")->as_array()) expected.push_back(JsonIds(layer));
    EXPECT_EQ(LocalRepresentatives(*result->sequences[0], model->engine->weights()), expected);
    const Tensor& logits = result->prompt_logits[0];
    const float* last = logits.data<float>() + (logits.dim(0) - 1) * logits.dim(1);
    for (const Json& pair : c.Find("chai_last_logits_top20_fp32")->as_array()) {
      EXPECT_NEAR(last[static_cast<int>(pair.as_array()[0].as_double())], pair.as_array()[1].as_double(), 1e-3);
    }
  }
}

}  // namespace
}  // namespace chai::testing
