// The whole engine on the GPU against the Hugging Face fixtures and the CPU reference:
// fp32: greedy ids identical and logits within 1e-4; fp16: logits relative error <= 1e-2 and the
// first 8 greedy ids identical; bf16: the same against the CPU reference on bf16-rounded weights; CHAI on the GPU: same representatives and logits as
// the CPU CHAI reference. Skips with a reason without a GPU.
#include <cmath>
#include <cstdio>

#include "gtest/gtest.h"
#include "kernels/device_memory.h"
#include "runtime/generator.h"
#include "tests/support/chai_helpers.h"
#include "tests/support/test_paths.h"

namespace chai::testing {
namespace {

// Norm-wise relative error per row, worst row.
double WorstRowRelErr(const std::vector<std::vector<float>>& out, const std::vector<std::vector<float>>& ref) {
  if (out.size() != ref.size()) return INFINITY;
  double worst = 0;
  for (size_t r = 0; r < ref.size(); ++r) {
    double num = 0, den = 0;
    for (size_t c = 0; c < ref[r].size(); ++c) {
      if (!std::isfinite(out[r][c])) return INFINITY;
      num += std::pow(double(out[r][c]) - ref[r][c], 2);
      den += std::pow(double(ref[r][c]), 2);
    }
    worst = std::max(worst, std::sqrt(num / std::max(den, 1e-30)));
  }
  return worst;
}

class GpuEngine : public ::testing::TestWithParam<std::tuple<std::string, DType>> {
 protected:
  void SetUp() override {
    if (!CudaAvailable()) GTEST_SKIP() << "no CUDA device visible: GPU engine tests skipped";
  }
};

TEST_P(GpuEngine, MatchesHuggingFace) {
  const auto [name, dtype] = GetParam();
  const std::string dir = FixtureDir(name);
  auto model = LoadTestModel(dir, nullptr, {}, dtype, Device::kCuda);
  ASSERT_TRUE(model.ok()) << model.status();
  auto golden = ReadJsonFile(dir + "/golden.json");
  ASSERT_TRUE(golden.ok());
  for (const Json& c : golden->Find("cases")->as_array()) {
    const std::vector<int32_t> prompt = JsonIds(*c.Find("prompt_ids"));
    SCOPED_TRACE(::testing::Message() << DTypeName(dtype) << " prompt length " << prompt.size());
    const auto logits = PromptLogits(*model->engine, prompt);
    const auto expected = JsonMatrix(*c.Find("logits"));
    const std::vector<int32_t> greedy = JsonIds(*c.Find("greedy"));
    std::vector<int32_t> expected_new(greedy.begin() + prompt.size(), greedy.end());
    if (dtype == DType::kF32) {
      EXPECT_LE(MaxAbsDiff(logits, expected), 1e-4);
      EXPECT_EQ(GreedyTokens(*model->engine, prompt, static_cast<int>(expected_new.size())), expected_new);
    } else if (dtype == DType::kF16) {
      EXPECT_LE(WorstRowRelErr(logits, expected), 1e-2);
      expected_new.resize(8);
      EXPECT_EQ(GreedyTokens(*model->engine, prompt, 8), expected_new);
    } else {
      // bf16 keeps 8 mantissa bits: rounding the weights alone moves these small random models'
      // logits by 1-3% from Hugging Face's fp32 (printed below). The kernels are held to 1e-2
      // against the fp32 CPU reference run on the same bf16-rounded weights.
      auto rounded = LoadRoundedCpuModel(dir, dtype);
      ASSERT_TRUE(rounded.ok()) << rounded.status();
      std::printf("bf16 vs Hugging Face fp32: relative error %.4f\n", WorstRowRelErr(logits, expected));
      EXPECT_LE(WorstRowRelErr(logits, PromptLogits(*rounded->engine, prompt)), 1e-2);
      EXPECT_EQ(GreedyTokens(*model->engine, prompt, 8), GreedyTokens(*rounded->engine, prompt, 8));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, GpuEngine,
                         ::testing::Combine(::testing::Values("opt-preln", "opt-postln", "opt-proj", "llama-mha",
                                                              "llama-gqa", "llama-bias"),
                                            ::testing::Values(DType::kF32, DType::kF16, DType::kBF16)),
                         [](const auto& info) {
                           std::string n = std::get<0>(info.param) + "_" + DTypeName(std::get<1>(info.param));
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

class GpuChai : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (!CudaAvailable()) GTEST_SKIP() << "no CUDA device visible: GPU CHAI tests skipped";
  }
};

// fp32 CHAI on the GPU reproduces the Python reference goldens (representatives, logits,
// greedy), short prompts included.
TEST_P(GpuChai, MatchesReference) {
  const std::string dir = FixtureDir(GetParam());
  auto golden = ReadJsonFile(dir + "/golden.json");
  ASSERT_TRUE(golden.ok());
  for (const Json& entry : golden->Find("chai")->as_array()) {
    auto model = LoadTestModel(dir, nullptr, {}, DType::kF32, Device::kCuda);
    ASSERT_TRUE(model.ok()) << model.status();
    auto policy = AttachChai(*model, JsonIds(*entry.Find("schedule")));
    for (const Json& c : entry.Find("cases")->as_array()) {
      const std::vector<int32_t> prompt = JsonIds(*c.Find("prompt_ids"));
      const std::vector<int32_t> greedy = JsonIds(*c.Find("greedy"));
      GenerateOptions options;
      options.max_new_tokens = static_cast<int>(greedy.size() - prompt.size());
      options.keep_prompt_logits = true;
      options.chai = policy.get();
      auto result = Generate(*model->engine, {prompt}, options);
      ASSERT_TRUE(result.ok()) << result.status();
      EXPECT_EQ(result->output_ids[0], std::vector<int32_t>(greedy.begin() + prompt.size(), greedy.end()));
      std::vector<std::vector<int>> reps;
      for (const Json& layer : c.Find("representatives")->as_array()) reps.push_back(JsonIds(layer));
      EXPECT_EQ(LocalRepresentatives(*result->sequences[0], model->engine->weights()), reps);
      const Tensor& logits = result->prompt_logits[0];
      std::vector<std::vector<float>> rows;
      for (int64_t r = 0; r < logits.dim(0); ++r)
        rows.emplace_back(logits.data<float>() + r * logits.dim(1), logits.data<float>() + (r + 1) * logits.dim(1));
      EXPECT_LE(MaxAbsDiff(rows, JsonMatrix(*c.Find("logits"))), 1e-4);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, GpuChai, ::testing::Values("opt-preln", "llama-gqa", "llama-bias"),
                         [](const auto& info) {
                           std::string n = info.param;
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

}  // namespace
}  // namespace chai::testing
