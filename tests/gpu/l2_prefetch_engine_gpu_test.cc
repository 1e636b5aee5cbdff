// The L2 prefetch experiment (EngineOptions::l2_prefetch_bytes, CHAI_L2_PREFETCH_MB) must not
// change results: on fixture models in fp16 and bf16 (where decode steps run the GEMV, so the
// prefetches are issued), one sequence and three stepped together, every decode fusion, with
// decode steps recorded as CUDA graphs and run eagerly, the logits of every step are bit-identical
// with and without the prefetch, at a size below a weight's (4097 bytes) and above every weight's
// (16 MiB), and so are the greedy tokens. Then the knob itself through the `chai` binary: greedy
// generation on the GPU gives the same tokens with CHAI_L2_PREFETCH_MB=16 as without it. Skips
// with a reason without a GPU.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/device_memory.h"
#include "runtime/json.h"
#include "tests/support/engine_helpers.h"
#include "tests/support/test_paths.h"

namespace chai::testing {
namespace {

class L2PrefetchEngineGpu : public ::testing::TestWithParam<std::tuple<std::string, DType>> {
 protected:
  void SetUp() override {
    if (!CudaAvailable()) GTEST_SKIP() << "no CUDA device visible: L2 prefetch engine tests skipped";
  }
};

TEST_P(L2PrefetchEngineGpu, LogitsAndGreedyTokensBitIdentical) {
  const auto [name, dtype] = GetParam();
  const std::string dir = FixtureDir(name);
  constexpr int kSteps = 6;  // per batch shape: an eager warm-up step, the recording, then replays
  const std::vector<std::vector<int32_t>> prompts = {{1, 5, 9, 13, 2, 7, 11}, {3, 8, 4}, {6, 2, 10, 12, 1}};
  std::vector<std::vector<int32_t>> next(prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    for (int s = 0; s < kSteps; ++s) next[i].push_back(static_cast<int32_t>(7 * s + 3 * i + 1));
  }
  for (LinearFusion fusion : {LinearFusion::kNone, LinearFusion::kActivation, LinearFusion::kAll}) {
    for (bool graphs : {true, false}) {
      auto off = LoadTestModel(dir, nullptr, {}, dtype, Device::kCuda, graphs, fusion);
      ASSERT_TRUE(off.ok()) << off.status();
      for (size_t batch : {size_t{1}, size_t{3}}) {
        const std::vector<std::vector<int32_t>> ps(prompts.begin(), prompts.begin() + batch);
        const std::vector<std::vector<int32_t>> ns(next.begin(), next.begin() + batch);
        const auto want = SteppedLogits(*off->engine, ps, ns, kSteps);
        ASSERT_EQ(want.size(), static_cast<size_t>(kSteps + 1));
        for (int64_t bytes : {int64_t{4097}, int64_t{16} << 20}) {
          SCOPED_TRACE(::testing::Message() << DTypeName(dtype) << " fusion " << static_cast<int>(fusion)
                                            << (graphs ? " graphs" : " eager") << " batch " << batch
                                            << " prefetch " << bytes << " bytes");
          auto on = LoadTestModel(dir, nullptr, {}, dtype, Device::kCuda, graphs, fusion, false, bytes);
          ASSERT_TRUE(on.ok()) << on.status();
          const auto got = SteppedLogits(*on->engine, ps, ns, kSteps);
          ASSERT_EQ(got.size(), want.size());
          for (size_t s = 0; s < want.size(); ++s) {
            ASSERT_EQ(got[s].size(), want[s].size());
            EXPECT_EQ(std::memcmp(got[s].data(), want[s].data(), want[s].size() * sizeof(float)), 0)
                << "step " << s << " (0: prefill): logits differ with the prefetch";
          }
          if (batch == 1) {
            EXPECT_EQ(GreedyTokens(*on->engine, prompts[0], 8), GreedyTokens(*off->engine, prompts[0], 8));
          }
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, L2PrefetchEngineGpu,
                         ::testing::Combine(::testing::Values("llama-gqa", "llama-bias", "opt-preln", "opt-postln"),
                                            ::testing::Values(DType::kF16, DType::kBF16)),
                         [](const auto& info) {
                           std::string n = std::get<0>(info.param) + "_" + DTypeName(std::get<1>(info.param));
                           for (char& c : n) {
                             if (c == '-') c = '_';
                           }
                           return n;
                         });

// `chai generate` on the GPU with CHAI_L2_PREFETCH_MB unset and set: the same greedy tokens.
std::vector<int32_t> GenerateOnGpu(const char* prefetch_mb) {
  if (prefetch_mb == nullptr) {
    unsetenv("CHAI_L2_PREFETCH_MB");
  } else {
    setenv("CHAI_L2_PREFETCH_MB", prefetch_mb, 1);
  }
  const std::string json = std::filesystem::temp_directory_path() / "chai_l2_prefetch_generate.json";
  const std::string cmd = absl::StrCat(ChaiBinary(), " generate --model ", FixtureDir("llama-gqa"),
                                       " --device cuda --dtype fp16 --kv-cache-gb 0.25 --prompt-ids 1,5,9,13,2 "
                                       "--max-new-tokens 16 --json ",
                                       json, " >/dev/null");
  const int status = std::system(cmd.c_str());
  unsetenv("CHAI_L2_PREFETCH_MB");
  EXPECT_EQ(status, 0) << cmd;
  auto out = ReadJsonFile(json);
  EXPECT_TRUE(out.ok()) << out.status();
  return out.ok() ? JsonIds(*out->Find("output_ids")) : std::vector<int32_t>{};
}

TEST(L2PrefetchCliGpu, KnobKeepsGreedyTokens) {
  if (!CudaAvailable()) GTEST_SKIP() << "no CUDA device visible: L2 prefetch CLI test skipped";
  const std::vector<int32_t> off = GenerateOnGpu(nullptr);
  EXPECT_EQ(off.size(), 16u);
  EXPECT_EQ(GenerateOnGpu("16"), off);
}

}  // namespace
}  // namespace chai::testing
