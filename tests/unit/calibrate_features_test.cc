// Calibration sees the heads as CHAI does online: the features the collector records from a
// dense prefill, clustered the online way, give exactly the representatives ChaiPolicy fixes
// for the same 5-token prompt (rotary, GQA and OPT's q scaling included), on the fixtures.
// Only one layer is clustered at a time: clustering a layer changes the inputs of the layers
// after it, while calibration measures the dense model.
#include "gtest/gtest.h"
#include "runtime/calibrate/feature_collector.h"
#include "runtime/chai/clustering.h"
#include "runtime/chai/features.h"
#include "tests/support/chai_helpers.h"
#include "tests/support/engine_helpers.h"
#include "tests/support/test_paths.h"

namespace chai::testing {
namespace {

void ExpectCollectorMatchesPolicy(const std::string& fixture, const std::vector<int>& clusters) {
  auto model = LoadTestModel(FixtureDir(fixture));
  ASSERT_TRUE(model.ok()) << model.status();
  const std::vector<int32_t> ids = {5, 17, 99, 42, 7, 120, 64, 3, 200, 11};
  const std::vector<int64_t> starts = {0, 5};  // two samples: ids[0..4] and ids[5..9]
  auto features = CollectFeatures(*model->engine, ids, starts, 2);
  ASSERT_TRUE(features.ok()) << features.status();
  const int heads = model->config.num_heads;
  ASSERT_EQ(features->size(), static_cast<size_t>(model->config.num_layers));

  for (size_t s = 0; s < starts.size(); ++s) {
    for (int l = 0; l < model->config.num_layers; ++l) {
      const std::vector<float>& f = (*features)[l][s];
      ASSERT_EQ(f.size(), static_cast<size_t>(heads * kChaiFeatureSize));
      // Each head's features are 5 softmax rows.
      for (int h = 0; h < heads; ++h) {
        double sum = 0;
        for (int j = 0; j < kChaiFeatureSize; ++j) sum += f[h * kChaiFeatureSize + j];
        EXPECT_NEAR(sum, 5.0, 1e-5);
      }
      std::vector<int> one_layer(model->config.num_layers, heads);
      one_layer[l] = clusters[l];
      auto policy = AttachChai(*model, one_layer);
      auto seq = *model->engine->NewSequence();
      policy->Enable(seq.get());
      std::vector<StepInput> steps = {
          {seq.get(), std::vector<int32_t>(ids.begin() + starts[s], ids.begin() + starts[s] + 5)}};
      ASSERT_TRUE(model->engine->Forward(absl::MakeSpan(steps), false).ok());
      const std::vector<int> want =
          Representatives(AverageLinkage(CosineDistances(f, heads, kChaiFeatureSize), heads, clusters[l]));
      EXPECT_EQ(LocalRepresentatives(*seq, model->engine->weights())[l], want)
          << fixture << " sample " << s << " layer " << l;
      model->engine->set_attention_policy(nullptr);
    }
  }
}

TEST(CalibrateFeatures, OptPreLn) { ExpectCollectorMatchesPolicy("opt-preln", {2, 2}); }
TEST(CalibrateFeatures, OptPostLn) { ExpectCollectorMatchesPolicy("opt-postln", {4, 3}); }
TEST(CalibrateFeatures, LlamaGqa) { ExpectCollectorMatchesPolicy("llama-gqa", {4, 3, 2}); }
TEST(CalibrateFeatures, LlamaBias) { ExpectCollectorMatchesPolicy("llama-bias", {2, 3}); }

TEST(CalibrateFeatures, SampleTooShort) {
  auto model = LoadTestModel(FixtureDir("opt-preln"));
  ASSERT_TRUE(model.ok());
  const std::vector<int32_t> ids = {5, 6, 7, 8, 9, 10};
  const std::vector<int64_t> starts = {2};
  auto features = CollectFeatures(*model->engine, ids, starts);
  ASSERT_FALSE(features.ok());
  EXPECT_NE(features.status().message().find("fewer than 5 tokens"), absl::string_view::npos);
}

}  // namespace
}  // namespace chai::testing
