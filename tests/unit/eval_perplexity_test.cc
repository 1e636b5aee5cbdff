// Perplexity: the window plan (Hugging Face's sliding-window recipe), the double log-softmax,
// and opt-tiny-docs against tests/fixtures/perplexity/golden.json: dense equal to transformers,
// CHAI equal to chai_reference.py for fixed schedules, within 1e-3 relative.
#include <cmath>

#include "gtest/gtest.h"
#include "runtime/eval/log_likelihood.h"
#include "runtime/eval/perplexity.h"
#include "runtime/eval/text_data.h"
#include "runtime/json.h"
#include "tests/support/chai_helpers.h"
#include "tests/support/engine_helpers.h"
#include "tests/support/test_paths.h"

namespace chai::testing {
namespace {

constexpr double kRelTol = 1e-3;

TEST(PlanWindows, NonOverlappingScoresAllButEachWindowsFirstToken) {
  auto w = PlanWindows(10, 4, 4);
  ASSERT_TRUE(w.ok()) << w.status();
  ASSERT_EQ(w->size(), 3u);
  EXPECT_EQ((*w)[0].begin, 0);
  EXPECT_EQ((*w)[0].end, 4);
  EXPECT_EQ((*w)[0].score_begin, 1);
  EXPECT_EQ((*w)[1].score_begin, 5);
  EXPECT_EQ((*w)[2].begin, 8);
  EXPECT_EQ((*w)[2].end, 10);
  EXPECT_EQ((*w)[2].score_begin, 9);
}

TEST(PlanWindows, OverlapScoresOnlyNewTokens) {
  auto w = PlanWindows(10, 4, 2);
  ASSERT_TRUE(w.ok()) << w.status();
  // [0,4) scores 1..3; [2,6) scores 4..5; [4,8) 6..7; [6,10) 8..9 and reaches the end.
  ASSERT_EQ(w->size(), 4u);
  int64_t scored = 0;
  for (const TextWindow& x : *w) scored += x.scored();
  EXPECT_EQ(scored, 9);  // every token but the first, exactly once
  EXPECT_EQ((*w)[1].score_begin, 4);
  EXPECT_EQ((*w)[3].end, 10);
}

TEST(PlanWindows, MaxWindowsAndShortTail) {
  auto w = PlanWindows(1000, 128, 128, 3);
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(w->size(), 3u);
  // A one-token tail scores nothing and is dropped.
  auto tail = PlanWindows(9, 4, 4);
  ASSERT_TRUE(tail.ok());
  EXPECT_EQ(tail->size(), 2u);
}

TEST(PlanWindows, Errors) {
  EXPECT_FALSE(PlanWindows(100, 1, 1).ok());
  EXPECT_FALSE(PlanWindows(100, 8, 0).ok());
  EXPECT_FALSE(PlanWindows(100, 8, 9).ok());
  EXPECT_FALSE(PlanWindows(1, 8, 8).ok());
}

TEST(WindowSplit, EvenCalibrateOddHeldOut) {
  // 10 whole windows of 4 in 42 tokens (the 2-token tail is no window).
  EXPECT_EQ(SplitPool(42, 4, WindowSplit::kAll).size(), 10u);
  EXPECT_EQ(SplitPool(42, 4, WindowSplit::kCalibration), (std::vector<int64_t>{0, 8, 16, 24, 32}));
  EXPECT_EQ(SplitPool(42, 4, WindowSplit::kHeldOut), (std::vector<int64_t>{4, 12, 20, 28, 36}));
  EXPECT_EQ(SpreadEvenly({0, 8, 16, 24, 32}, 2), (std::vector<int64_t>{0, 16}));
  EXPECT_EQ(SpreadEvenly({0, 8, 16, 24, 32}, 5), (std::vector<int64_t>{0, 8, 16, 24, 32}));
  const std::vector<TextWindow> w = WindowsAt({4, 12}, 4);
  ASSERT_EQ(w.size(), 2u);
  EXPECT_EQ(w[1].begin, 12);
  EXPECT_EQ(w[1].end, 16);
  EXPECT_EQ(w[1].score_begin, 13);
  EXPECT_TRUE(ParseWindowSplit("heldout").ok());
  EXPECT_FALSE(ParseWindowSplit("test").ok());
}

TEST(LogLikelihood, MatchesNaiveLogSoftmax) {
  const std::vector<float> logits = {1.5f, -2.0f, 30.0f, 29.5f, 0.0f};
  double z = 0;
  for (float x : logits) z += std::exp(static_cast<double>(x));
  for (int t = 0; t < 5; ++t) {
    EXPECT_NEAR(TokenLogProb(logits.data(), 5, t), logits[t] - std::log(z), 1e-12);
  }
  const int32_t targets[2] = {2, 3};
  std::vector<float> two = logits;
  two.insert(two.end(), logits.begin(), logits.end());
  EXPECT_NEAR(SumLogProbs(two.data(), 5, targets, 2), 2 * std::log(std::exp(29.75) / z), 1e-9);
}

class OptTinyDocsPerplexity : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!SharedAvailable()) GTEST_SKIP() << "../shared is absent: skipping opt-tiny-docs perplexity";
    const std::string dir = SharedDir() + "/models/opt-tiny-docs";
    auto golden = ReadJsonFile(FixtureDir("perplexity/golden.json"));
    ASSERT_TRUE(golden.ok()) << golden.status();
    golden_ = std::move(*golden);
    auto text = ReadTextFile(SharedDir() + "/data/dev_eval.txt", "--data");
    ASSERT_TRUE(text.ok()) << text.status();
    auto tokenizer = LoadModelTokenizer(dir);
    ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
    ids_ = TokenizeText(**tokenizer, *text);
    auto model = LoadTestModel(dir);
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = std::move(*model);
  }

  const Json& Case(const std::string& name) const {
    for (const Json& c : golden_.Find("cases")->as_array())
      if (c.Find("name")->as_string() == name) return c;
    ADD_FAILURE() << "no golden case " << name;
    return golden_;
  }

  // Runs the case's windows (with CHAI when it has a schedule) and compares with the golden.
  void Check(const std::string& name, int batch) {
    const Json& c = Case(name);
    auto windows = PlanWindows(static_cast<int64_t>(ids_.size()), *c.Find("window")->AsInt(),
                               *c.Find("stride")->AsInt(), *c.Find("max_windows")->AsInt());
    ASSERT_TRUE(windows.ok()) << windows.status();
    ASSERT_EQ(static_cast<int64_t>(windows->size()), *c.Find("windows")->AsInt());
    std::unique_ptr<ChaiPolicy> chai;
    PerplexityOptions options;
    options.batch = batch;
    if (!c.Find("schedule")->is_null()) {
      std::vector<int> schedule;
      for (const Json& k : c.Find("schedule")->as_array()) schedule.push_back(static_cast<int>(*k.AsInt()));
      chai = AttachChai(model_, schedule);
      options.chai = chai.get();
    }
    auto r = EvaluatePerplexity(*model_.engine, ids_, *windows, options);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->tokens, *c.Find("tokens")->AsInt());
    const double want = c.Find("perplexity")->as_double();
    EXPECT_NEAR(r->perplexity(), want, kRelTol * want) << name;
    const auto& window_nll = c.Find("window_nll")->as_array();
    for (int w = 0; w < r->windows(); ++w) {
      const double g = window_nll[w].as_double();
      EXPECT_NEAR(r->window_nll[w], g, kRelTol * g) << name << " window " << w;
    }
    model_.engine->set_attention_policy(nullptr);
  }

  Json golden_;
  std::vector<int32_t> ids_;
  TestModel model_;
};

TEST_F(OptTinyDocsPerplexity, TokenizerMatchesHuggingFace) {
  EXPECT_EQ(static_cast<int64_t>(ids_.size()), *golden_.Find("num_tokens")->AsInt());
  const std::vector<int32_t> first = JsonIds(*golden_.Find("first_ids"));
  EXPECT_EQ(std::vector<int32_t>(ids_.begin(), ids_.begin() + first.size()), first);
}

TEST_F(OptTinyDocsPerplexity, DenseMatchesTransformers) { Check("dense_w128", 1); }
TEST_F(OptTinyDocsPerplexity, DenseSlidingWindowMatchesTransformers) { Check("dense_w128_s64", 3); }
TEST_F(OptTinyDocsPerplexity, ChaiFourClustersMatchesReference) { Check("chai_4", 2); }
TEST_F(OptTinyDocsPerplexity, ChaiEightClustersMatchesReference) { Check("chai_8", 1); }

}  // namespace
}  // namespace chai::testing
