// The whole engine on the GPU against the Hugging Face fixtures and the CPU reference:
// fp32: greedy ids identical and logits within 1e-4; fp16: logits relative error <= 1e-2 and the
// first 8 greedy ids identical; bf16: no worse than Hugging Face's own bf16 run (see below);
// the trained opt-tiny-docs checkpoint in fp16 and bf16 against its golden; LLaMA decode with the
// Linears fused against the unfused engine and the CPU; CHAI on the GPU: same representatives and
// logits as the CPU CHAI reference. Skips with a reason without a GPU.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/device_memory.h"
#include "runtime/generator.h"
#include "tests/support/chai_helpers.h"
#include "tests/support/engine_helpers.h"
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
  auto bf16_golden = ReadJsonFile(dir + "/golden_bf16.json");
  ASSERT_TRUE(bf16_golden.ok()) << bf16_golden.status();
  size_t case_index = 0;
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
      // bf16 keeps 8 mantissa bits: on these scaled-up random models Hugging Face's own bf16 run
      // is 1-4% off its fp32 logits and flips greedy tokens at the near-ties these models have
      // (golden_bf16.json, made by make_bf16_goldens.py). Hold chai's logits to 1e-2 or to
      // Hugging Face's own bf16 error with a 1.5x margin, whichever is larger; bf16 greedy
      // tokens are checked on the trained checkpoint (GpuOptTinyDocs) instead.
      const Json& hf = bf16_golden->Find("cases")->as_array()[case_index];
      const double hf_err = hf.Find("hf_bf16_logits_rel_err")->as_double();
      const double err = WorstRowRelErr(logits, expected);
      std::printf("%s bf16 relative error %.4f (Hugging Face bf16: %.4f)\n", name.c_str(), err, hf_err);
      EXPECT_LE(err, std::max(1e-2, 1.5 * hf_err));
    }
    ++case_index;
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, GpuEngine,
                         ::testing::Combine(::testing::Values("opt-preln", "opt-postln", "opt-proj", "llama-mha",
                                                              "llama-gqa", "llama-bias", "llama-d64", "opt-d64"),
                                            ::testing::Values(DType::kF32, DType::kF16, DType::kBF16)),
                         [](const auto& info) {
                           std::string n = std::get<0>(info.param) + "_" + DTypeName(std::get<1>(info.param));
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

// Decode with the Linears fused on the GPU (LinearFusion::kActivation, the default: SiLU in LLaMA's
// gate|up GEMV, ReLU in OPT's fc1 GEMV; kAll, LLaMA: also RMSNorm and the residual adds in the
// GEMVs, 5 or 6 kernels a layer; OPT: as kActivation; and kActivation with the Q|K|V split, rotary and
// cache append in the Q|K|V GEMV, EngineOptions::qkv_append_in_gemv) against
// the same engine unfused (kNone) and, in fp16, the CPU reference on the dtype's rounded weights:
// one sequence (its 5-token prefill fused too), then three and four stepped together (prefills of
// 9 and 28 tokens: unfused), 6 decode steps through recorded graphs, every engine fed the same
// continuation. Logits per step within 1e-2 (worst row) of the unfused engine's; in bf16 kAll
// (whose folded norm rounds elsewhere) is held to the CPU instead, as MatchesHuggingFace holds
// bf16. Whether fused and unfused agree bit for bit is printed (expected with kActivation, whose
// epilogue rounds as the op it replaces; not with kAll). kAll runs with and without the Q|K|V
// append (which then takes the attention norm too). The default has L2 prefetch hints (the add +
// norm kernels fetch the next GEMV's first weights; EngineOptions::l2_prefetch) and one engine adds
// attention's (the o projection's): both must give the logits of the engine without hints bit for
// bit (a prefetch writes nothing; this catches a hint that breaks a launch or a norm's rows).
class GpuFusedDecode : public ::testing::TestWithParam<std::tuple<std::string, DType>> {
 protected:
  void SetUp() override {
    if (!CudaAvailable()) GTEST_SKIP() << "no CUDA device visible: GPU engine tests skipped";
  }
};

// Rows of `vocab` floats.
std::vector<std::vector<float>> SplitRows(const std::vector<float>& flat, size_t vocab) {
  std::vector<std::vector<float>> rows;
  for (size_t r = 0; r + vocab <= flat.size(); r += vocab) {
    rows.emplace_back(flat.begin() + r, flat.begin() + r + vocab);
  }
  return rows;
}

TEST_P(GpuFusedDecode, MatchesUnfusedAndReference) {
  const auto [name, dtype] = GetParam();
  const std::string dir = FixtureDir(name);
  auto plain = LoadTestModel(dir, nullptr, {}, dtype, Device::kCuda, true, LinearFusion::kNone, false, false);
  auto act = LoadTestModel(dir, nullptr, {}, dtype, Device::kCuda, true, LinearFusion::kActivation, false, false);
  auto all = LoadTestModel(dir, nullptr, {}, dtype, Device::kCuda, true, LinearFusion::kAll, false, false);
  // The default: the activation fusion with the Q|K|V split, rotary and append in the Q|K|V GEMV.
  auto qkv = LoadTestModel(dir, nullptr, {}, dtype, Device::kCuda);
  // kAll with the Q|K|V append: the attention norm, the split, rotary and append in one GEMV.
  auto all_qkv = LoadTestModel(dir, nullptr, {}, dtype, Device::kCuda, true, LinearFusion::kAll, false, true);
  // The default without the L2 prefetch hints, and with attention's too (budgets beyond these weights).
  auto unhinted = LoadTestModel(dir, nullptr, {}, dtype, Device::kCuda, true, LinearFusion::kActivation, false, true,
                                EngineOptions::L2PrefetchBudget{0, 0, L2HintForm::kHeads});
  auto all_hints = LoadTestModel(dir, nullptr, {}, dtype, Device::kCuda, true, LinearFusion::kActivation, false, true,
                                 EngineOptions::L2PrefetchBudget{1 << 20, 1 << 20, L2HintForm::kHeads});
  // Both hints as prefixes of rows also for one-wave GEMVs (CHAI_L2_PREFETCH=...,rows).
  auto rows_hints = LoadTestModel(dir, nullptr, {}, dtype, Device::kCuda, true, LinearFusion::kActivation, false, true,
                                  EngineOptions::L2PrefetchBudget{1 << 20, 1 << 20, L2HintForm::kRows});
  auto ref = LoadRoundedCpuModel(dir, dtype);
  for (const auto* m : {&plain, &act, &all, &qkv, &all_qkv, &unhinted, &all_hints, &rows_hints, &ref}) {
    ASSERT_TRUE(m->ok()) << m->status();
  }
  auto golden = ReadJsonFile(dir + "/golden.json");
  ASSERT_TRUE(golden.ok());
  std::vector<std::vector<int32_t>> prompts, next;
  for (const Json& c : golden->Find("cases")->as_array()) {
    prompts.push_back(JsonIds(*c.Find("prompt_ids")));
    const std::vector<int32_t> greedy = JsonIds(*c.Find("greedy"));
    next.emplace_back(greedy.begin() + prompts.back().size(), greedy.end());
  }
  ASSERT_EQ(prompts.size(), 4u);
  ASSERT_EQ(prompts[1].size(), 5u);
  // Hugging Face's own bf16 error on this model's prompts (the largest over its cases).
  auto bf16_golden = ReadJsonFile(dir + "/golden_bf16.json");
  ASSERT_TRUE(bf16_golden.ok()) << bf16_golden.status();
  double hf_bf16_err = 0;
  for (const Json& c : bf16_golden->Find("cases")->as_array()) {
    hf_bf16_err = std::max(hf_bf16_err, c.Find("hf_bf16_logits_rel_err")->as_double());
  }
  const size_t vocab = static_cast<size_t>(plain->config.vocab_size);
  constexpr int kSteps = 6;
  for (const std::vector<int>& batch : {std::vector<int>{1}, {0, 1, 3}, {0, 1, 2, 3}}) {
    std::vector<std::vector<int32_t>> ps, ns;
    for (int i : batch) ps.push_back(prompts[i]), ns.push_back(next[i]);
    const auto u = SteppedLogits(*plain->engine, ps, ns, kSteps);
    const auto r = SteppedLogits(*ref->engine, ps, ns, kSteps);
    ASSERT_EQ(u.size(), kSteps + 1u);
    ASSERT_EQ(r.size(), kSteps + 1u);
    const auto no_hints = SteppedLogits(*unhinted->engine, ps, ns, kSteps);
    EXPECT_EQ(no_hints, SteppedLogits(*qkv->engine, ps, ns, kSteps))
        << name << " " << DTypeName(dtype) << " " << batch.size() << " sequences: the norms' L2 hints changed the logits";
    EXPECT_EQ(no_hints, SteppedLogits(*all_hints->engine, ps, ns, kSteps))
        << name << " " << DTypeName(dtype) << " " << batch.size() << " sequences: attention's L2 hint changed the logits";
    EXPECT_EQ(no_hints, SteppedLogits(*rows_hints->engine, ps, ns, kSteps))
        << name << " " << DTypeName(dtype) << " " << batch.size() << " sequences: the rows-form hints changed the logits";
    for (auto* fused : {&act, &all, &qkv, &all_qkv}) {
      const char* what = fused == &all       ? "all fusions"
                         : fused == &all_qkv ? "all fusions and Q|K|V append"
                         : fused == &qkv     ? "activation and Q|K|V append"
                                             : "activation fusion";
      const bool folds_norm = fused == &all || fused == &all_qkv;
      SCOPED_TRACE(::testing::Message() << name << " " << DTypeName(dtype) << " " << batch.size() << " sequences, "
                                        << what);
      const auto f = SteppedLogits(*(*fused)->engine, ps, ns, kSteps);
      ASSERT_EQ(f.size(), kSteps + 1u);
      int identical = 0;
      for (int s = 0; s <= kSteps; ++s) {
        SCOPED_TRACE(::testing::Message() << (s == 0 ? "prefill" : "decode step " + std::to_string(s)));
        const auto fr = SplitRows(f[s], vocab);
        ASSERT_EQ(fr.size(), batch.size());
        // bf16 keeps 8 mantissa bits: on these scaled-up random models its logits are 1-4% off
        // fp32 (MatchesHuggingFace), fused or not; fp16 holds 1e-2 against the CPU. kAll's folded
        // norm rounds elsewhere than the unfused norm, so in bf16 the two can differ by as much as
        // each differs from fp32: there the bf16 rule of MatchesHuggingFace applies, against the
        // CPU (fp32 arithmetic): max(1e-2, 1.5 x Hugging Face's own bf16 error on this model).
        const auto cpu = SplitRows(r[s], vocab);
        if (dtype == DType::kF16 || !folds_norm) {
          EXPECT_LE(WorstRowRelErr(fr, SplitRows(u[s], vocab)), 1e-2) << "fused against unfused";
        } else {
          EXPECT_LE(WorstRowRelErr(fr, cpu), std::max(1e-2, 1.5 * hf_bf16_err))
              << "against the CPU; the unfused engine is at " << WorstRowRelErr(SplitRows(u[s], vocab), cpu)
              << ", Hugging Face bf16 at " << hf_bf16_err;
        }
        if (dtype == DType::kF16) {
          EXPECT_LE(WorstRowRelErr(fr, cpu), 1e-2) << "against the CPU";
        }
        identical += f[s] == u[s];
      }
      std::printf("%s %s, %zu sequences, %s: %d of %d steps' logits identical fused and unfused\n", name.c_str(),
                  DTypeName(dtype), batch.size(), what, identical, kSteps + 1);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, GpuFusedDecode,
                         ::testing::Combine(::testing::Values("opt-preln", "opt-postln", "llama-mha", "llama-gqa",
                                                              "llama-bias", "llama-d64", "opt-d64"),
                                            ::testing::Values(DType::kF16, DType::kBF16)),
                         [](const auto& info) {
                           std::string n = std::get<0>(info.param) + "_" + DTypeName(std::get<1>(info.param));
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

// A trained model (realistic activations) in half precision: greedy ids of the first 8 tokens
// identical to Hugging Face fp32, top-20 last-position logits within 1e-2 relative (bf16: or 1.5x
// Hugging Face's own bf16 error on them, whichever is larger).
TEST(GpuOptTinyDocs, HalfPrecisionMatchesGolden) {
  if (!CudaAvailable()) GTEST_SKIP() << "no CUDA device visible";
  if (!SharedAvailable()) GTEST_SKIP() << "../shared is absent: skipping opt-tiny-docs";
  const std::string dir = SharedDir() + "/models/opt-tiny-docs";
  auto golden = ReadJsonFile(dir + "/golden.json");
  ASSERT_TRUE(golden.ok());
  // Hugging Face's own bf16 error on the same top-20 logits (make_bf16_goldens.py): one prompt
  // moves 1.6% in Hugging Face bf16, so bf16 is held to max(1e-2, 1.5x that), as on the fixtures.
  auto hf_bf16 = ReadJsonFile(FixtureDir("opt-tiny-docs-bf16.json"));
  ASSERT_TRUE(hf_bf16.ok()) << hf_bf16.status();
  for (DType dtype : {DType::kF16, DType::kBF16}) {
    auto model = LoadTestModel(dir, nullptr, {}, dtype, Device::kCuda);
    ASSERT_TRUE(model.ok()) << model.status();
    size_t case_index = 0;
    for (const Json& c : golden->Find("cases")->as_array()) {
      const Json& hf = hf_bf16->Find("cases")->as_array()[case_index++];
      ASSERT_EQ(JsonIds(*hf.Find("prompt_ids")), JsonIds(*c.Find("prompt_ids")));
      const std::vector<int32_t> prompt = JsonIds(*c.Find("prompt_ids"));
      const std::vector<int32_t> greedy = JsonIds(*c.Find("greedy_ids_fp32"));
      SCOPED_TRACE(::testing::Message() << DTypeName(dtype) << " prompt length " << prompt.size());
      EXPECT_EQ(GreedyTokens(*model->engine, prompt, 8),
                std::vector<int32_t>(greedy.begin() + prompt.size(), greedy.begin() + prompt.size() + 8));
      const auto logits = PromptLogits(*model->engine, prompt);
      double num = 0, den = 0;
      for (const Json& pair : c.Find("last_logits_top20_fp32")->as_array()) {
        const double ref = pair.as_array()[1].as_double();
        num += std::pow(logits.back()[static_cast<int>(pair.as_array()[0].as_double())] - ref, 2);
        den += ref * ref;
      }
      const double tolerance =
          dtype == DType::kBF16 ? std::max(1e-2, 1.5 * hf.Find("hf_bf16_top20_rel_err")->as_double()) : 1e-2;
      EXPECT_LE(std::sqrt(num / den), tolerance);
    }
  }
}

// Long decodes through recorded graphs: a graph is recorded per (batch size, length bucket), and
// the attention launch inside it is planned for the bucket's bound (runtime/graph_buckets.h).
// Three prompts of different lengths decode 300 tokens each, crossing the 128, 192, 256 and 384
// buckets; fp32 greedy ids must equal those of the same model run eagerly (no graphs).
TEST(GpuOptTinyDocs, LongDecodeGraphsMatchEager) {
  if (!CudaAvailable()) GTEST_SKIP() << "no CUDA device visible";
  if (!SharedAvailable()) GTEST_SKIP() << "../shared is absent: skipping opt-tiny-docs";
  const std::string dir = SharedDir() + "/models/opt-tiny-docs";
  auto golden = ReadJsonFile(dir + "/golden.json");
  ASSERT_TRUE(golden.ok());
  std::vector<std::vector<int32_t>> prompts;
  for (const Json& c : golden->Find("cases")->as_array()) prompts.push_back(JsonIds(*c.Find("prompt_ids")));
  prompts.resize(std::min<size_t>(prompts.size(), 3));
  GenerateOptions options;
  options.max_new_tokens = 300;
  std::vector<std::vector<int32_t>> ids[2];
  for (bool graphs : {false, true}) {
    auto model = LoadTestModel(dir, nullptr, {}, DType::kF32, Device::kCuda, graphs);
    ASSERT_TRUE(model.ok()) << model.status();
    auto result = Generate(*model->engine, prompts, options);
    ASSERT_TRUE(result.ok()) << result.status();
    ids[graphs] = result->output_ids;
  }
  ASSERT_EQ(ids[0].size(), prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    SCOPED_TRACE(::testing::Message() << "prompt " << i << " (" << prompts[i].size() << " tokens)");
    EXPECT_EQ(ids[0][i].size(), 300u);
    EXPECT_EQ(ids[1][i], ids[0][i]);
  }
}

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

INSTANTIATE_TEST_SUITE_P(Fixtures, GpuChai, ::testing::Values("opt-preln", "llama-gqa", "llama-bias", "llama-d64"),
                         FixtureParamName());

}  // namespace
}  // namespace chai::testing
