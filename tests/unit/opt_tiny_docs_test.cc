// The trained checkpoint in ../shared/models/opt-tiny-docs against its Hugging Face golden:
// greedy ids identical (32 new tokens), top-20 last-position logits within 1e-3.
#include "gtest/gtest.h"
#include "runtime/generator.h"
#include "tests/support/engine_helpers.h"
#include "tests/support/test_paths.h"

namespace chai::testing {
namespace {

TEST(OptTinyDocs, DenseMatchesGolden) {
  if (!SharedAvailable()) GTEST_SKIP() << "../shared is absent: skipping opt-tiny-docs";
  const std::string dir = SharedDir() + "/models/opt-tiny-docs";
  auto model = LoadTestModel(dir);
  ASSERT_TRUE(model.ok()) << model.status();
  auto golden = ReadJsonFile(dir + "/golden.json");
  ASSERT_TRUE(golden.ok()) << golden.status();
  for (const Json& c : golden->Find("cases")->as_array()) {
    const std::vector<int32_t> prompt = JsonIds(*c.Find("prompt_ids"));
    const std::vector<int32_t> greedy = JsonIds(*c.Find("greedy_ids_fp32"));
    GenerateOptions options;
    options.max_new_tokens = static_cast<int>(greedy.size() - prompt.size());
    options.keep_prompt_logits = true;
    auto result = Generate(*model->engine, {prompt}, options);
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_EQ(result->output_ids[0], std::vector<int32_t>(greedy.begin() + prompt.size(), greedy.end()));
    const Tensor& logits = result->prompt_logits[0];
    const float* last = logits.data<float>() + (logits.dim(0) - 1) * logits.dim(1);
    for (const Json& pair : c.Find("last_logits_top20_fp32")->as_array()) {
      const int id = static_cast<int>(pair.as_array()[0].as_double());
      EXPECT_NEAR(last[id], pair.as_array()[1].as_double(), 1e-3) << "token " << id;
    }
  }
}

}  // namespace
}  // namespace chai::testing
