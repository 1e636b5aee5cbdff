// Programmatic Dependent Launch (CHAI_PDL=1, kernels/cuda/pdl.h) must not change results: greedy
// generation of two sequences on fixture models, decode steps recorded and replayed as CUDA
// graphs (LoadTestModel turns that on for CUDA engines), once with CHAI_PDL unset and once with
// CHAI_PDL=1, gives the same tokens and bit-identical logits at every step. Skips without a GPU;
// on a device that cannot use PDL (compute capability < 9.0) both runs are plain launches and
// the test says so.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <tuple>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cuda/pdl.h"
#include "kernels/device_memory.h"
#include "tests/support/engine_helpers.h"
#include "tests/support/test_paths.h"

namespace chai::testing {
namespace {

struct GreedyRun {
  std::vector<std::vector<int32_t>> ids;   // new tokens per sequence
  std::vector<std::vector<float>> logits;  // every step's [sequences * vocab] logits
  bool pdl = false;                        // whether PDL was in effect
};

// Prefill of two prompts of different lengths, then `steps` greedy decode steps of both.
GreedyRun RunGreedy(const std::string& dir, DType dtype, bool pdl, int steps) {
  if (pdl) {
    setenv("CHAI_PDL", "1", 1);
  } else {
    unsetenv("CHAI_PDL");
  }
  cuda::ReloadPdlSetting();
  GreedyRun run;
  run.pdl = cuda::PdlEnabled();
  auto model = LoadTestModel(dir, nullptr, {}, dtype, Device::kCuda);
  EXPECT_TRUE(model.ok()) << model.status();
  if (!model.ok()) return run;
  Engine& engine = *model->engine;
  const int64_t vocab = engine.config().vocab_size;
  const std::vector<std::vector<int32_t>> prompts = {{1, 5, 9, 13, 2, 7, 11}, {3, 8, 4}};
  std::vector<std::unique_ptr<Sequence>> seqs;
  std::vector<StepInput> step;
  for (const auto& p : prompts) {
    auto seq = engine.NewSequence();
    EXPECT_TRUE(seq.ok()) << seq.status();
    if (!seq.ok()) return run;
    seqs.push_back(std::move(*seq));
    std::vector<int32_t> ids;
    for (int32_t id : p) ids.push_back(static_cast<int32_t>(id % vocab));
    step.push_back({seqs.back().get(), ids});
  }
  run.ids.resize(prompts.size());
  for (int s = 0; s <= steps; ++s) {  // s == 0: prefill
    auto logits = engine.Forward(absl::MakeSpan(step), false);
    EXPECT_TRUE(logits.ok()) << logits.status();
    if (!logits.ok()) return run;
    const float* l = logits->data<float>();
    run.logits.emplace_back(l, l + prompts.size() * vocab);
    for (size_t i = 0; i < prompts.size(); ++i) {
      int32_t best = 0;
      for (int64_t v = 1; v < vocab; ++v) {
        if (l[i * vocab + v] > l[i * vocab + best]) best = static_cast<int32_t>(v);
      }
      run.ids[i].push_back(best);
      step[i].tokens = {best};
    }
  }
  return run;
}

class PdlGpu : public ::testing::TestWithParam<std::tuple<std::string, DType>> {
 protected:
  void SetUp() override {
    if (!CudaAvailable()) GTEST_SKIP() << "no CUDA device visible: PDL GPU tests skipped";
  }
  void TearDown() override {
    unsetenv("CHAI_PDL");
    cuda::ReloadPdlSetting();
  }
};

TEST_P(PdlGpu, GreedyGraphsBitIdentical) {
  const auto [name, dtype] = GetParam();
  constexpr int kSteps = 8;
  const GreedyRun off = RunGreedy(FixtureDir(name), dtype, false, kSteps);
  const GreedyRun on = RunGreedy(FixtureDir(name), dtype, true, kSteps);
  EXPECT_FALSE(off.pdl);
  if (!on.pdl) std::printf("CHAI_PDL=1 has no effect on this device (compute capability < 9.0)\n");
  ASSERT_EQ(off.logits.size(), static_cast<size_t>(kSteps + 1));
  ASSERT_EQ(on.logits.size(), off.logits.size());
  EXPECT_EQ(on.ids, off.ids);
  for (size_t s = 0; s < off.logits.size(); ++s) {
    ASSERT_EQ(on.logits[s].size(), off.logits[s].size());
    EXPECT_EQ(std::memcmp(on.logits[s].data(), off.logits[s].data(), off.logits[s].size() * sizeof(float)), 0)
        << DTypeName(dtype) << " step " << s << ": logits differ with CHAI_PDL=1";
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, PdlGpu,
                         ::testing::Combine(::testing::Values("llama-gqa", "opt-preln"),
                                            ::testing::Values(DType::kF16, DType::kBF16, DType::kF32)),
                         [](const auto& info) {
                           std::string n = std::get<0>(info.param) + "_" + DTypeName(std::get<1>(info.param));
                           for (char& c : n) {
                             if (c == '-') c = '_';
                           }
                           return n;
                         });

}  // namespace
}  // namespace chai::testing
