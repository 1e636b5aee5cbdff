// The stacked projection weights (LayerWeights::qkv_w, gate_up_w and their biases) hold, per
// rank, exactly the checkpoint rows of that rank's heads and feed-forward slice, q | k | v and
// gate | up, under tensor parallelism with a non-identity head placement too.
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/model_weights.h"
#include "runtime/tensor_source.h"
#include "tests/support/test_paths.h"

namespace chai::testing {
namespace {

// Rows [begin, end) of a checkpoint tensor (first dimension), as floats.
std::vector<float> RowsOf(const TensorSource& source, const std::string& name, std::vector<int64_t> shape,
                          int64_t begin, int64_t end) {
  auto t = source.Get(name, shape);
  EXPECT_TRUE(t.ok()) << t.status();
  if (!t.ok()) return {};
  const std::vector<float> all = t->Cast(DType::kF32).ToFloats();
  const int64_t row = t->numel() / shape[0];
  return std::vector<float>(all.begin() + begin * row, all.begin() + end * row);
}

void Append(std::vector<float>* to, const std::vector<float>& more) { to->insert(to->end(), more.begin(), more.end()); }

// A placement that reverses the KV groups of every layer (keeps each group whole).
std::vector<std::vector<int>> ReversedGroups(const ModelConfig& c) {
  const int group = c.kv_group_size();
  std::vector<int> order;
  for (int g = c.num_kv_heads - 1; g >= 0; --g)
    for (int i = 0; i < group; ++i) order.push_back(g * group + i);
  return std::vector<std::vector<int>>(c.num_layers, order);
}

void CheckStacked(const std::string& fixture, int world, bool reversed) {
  SCOPED_TRACE(::testing::Message() << fixture << " world=" << world << " reversed=" << reversed);
  auto config = LoadModelConfig(FixtureDir(fixture));
  ASSERT_TRUE(config.ok()) << config.status();
  const ModelConfig& c = *config;
  auto source = OpenCheckpoint(FixtureDir(fixture));
  ASSERT_TRUE(source.ok()) << source.status();
  const bool llama = c.arch == Arch::kLlama;
  const std::string p = llama ? "model.layers." : "model.decoder.layers.";
  const int64_t h = c.hidden_size, d = c.head_dim, ffn_local = c.ffn_dim / world;
  for (int rank = 0; rank < world; ++rank) {
    ParallelLayout layout{rank, world, reversed ? ReversedGroups(c) : std::vector<std::vector<int>>{}};
    auto w = LoadWeights(c, **source, layout, DType::kF32, Device::kCpu);
    ASSERT_TRUE(w.ok()) << w.status();
    for (int l = 0; l < c.num_layers; ++l) {
      const LayerWeights& L = w->layers[l];
      const std::string a = p + std::to_string(l) + ".self_attn.";
      for (const char* kind : {"weight", "bias"}) {
        const bool bias = std::string(kind) == "bias";
        if (bias && !c.qkv_bias()) {
          EXPECT_FALSE(L.qkv_b.defined());
          continue;
        }
        std::vector<int64_t> q_shape = {c.num_heads * d}, kv_shape = {c.num_kv_heads * d};
        if (!bias) q_shape.push_back(h), kv_shape.push_back(h);
        std::vector<float> expected;
        for (int head : L.heads)
          Append(&expected, RowsOf(**source, a + "q_proj." + kind, q_shape, head * d, (head + 1) * d));
        for (const char* proj : {"k_proj.", "v_proj."}) {
          for (int kv : L.kv_heads)
            Append(&expected, RowsOf(**source, a + proj + kind, kv_shape, kv * d, (kv + 1) * d));
        }
        const Tensor& got = bias ? L.qkv_b : L.qkv_w;
        ASSERT_EQ(got.dim(0), (w->local_heads + 2 * w->local_kv_heads) * d);
        EXPECT_EQ(got.ToFloats(), expected) << "layer " << l << " rank " << rank << " qkv " << kind;
      }
      if (!llama) {
        EXPECT_FALSE(L.gate_up_w.defined());
        EXPECT_EQ(L.up_w.dim(0), ffn_local);  // OPT fc1 stays its own (bias-epilogue) GEMM
        continue;
      }
      const std::string m = p + std::to_string(l) + ".mlp.";
      for (const char* kind : {"weight", "bias"}) {
        const bool bias = std::string(kind) == "bias";
        if (bias && !c.mlp_has_bias()) {
          EXPECT_FALSE(L.gate_up_b.defined());
          continue;
        }
        std::vector<int64_t> shape = {c.ffn_dim};
        if (!bias) shape.push_back(h);
        std::vector<float> expected;
        for (const char* proj : {"gate_proj.", "up_proj."}) {
          Append(&expected, RowsOf(**source, m + proj + kind, shape, rank * ffn_local, (rank + 1) * ffn_local));
        }
        const Tensor& got = bias ? L.gate_up_b : L.gate_up_w;
        EXPECT_EQ(got.ToFloats(), expected) << "layer " << l << " rank " << rank << " gate_up " << kind;
      }
    }
  }
}

TEST(StackedWeights, HoldEachRanksRowsInOrder) {
  for (const char* fixture : {"llama-gqa", "llama-bias", "llama-mha", "opt-preln"}) {
    for (int world : {1, 2}) {
      for (bool reversed : {false, true}) CheckStacked(fixture, world, reversed);
    }
  }
}

// LoadWeights reports each decoder layer once it is in place, in order (the CLI prints from it).
TEST(LoadWeights, ReportsEveryLayerInOrder) {
  auto config = LoadModelConfig(FixtureDir("llama-gqa"));
  ASSERT_TRUE(config.ok()) << config.status();
  auto source = OpenCheckpoint(FixtureDir("llama-gqa"));
  ASSERT_TRUE(source.ok()) << source.status();
  std::vector<std::pair<int, int>> calls;
  auto w = LoadWeights(*config, **source, ParallelLayout{}, DType::kF32, Device::kCpu,
                       [&](int done, int total) { calls.emplace_back(done, total); });
  ASSERT_TRUE(w.ok()) << w.status();
  std::vector<std::pair<int, int>> expected;
  for (int l = 1; l <= config->num_layers; ++l) expected.emplace_back(l, config->num_layers);
  EXPECT_EQ(calls, expected);
}

// MinWeightBytesPerRank (the CLI refuses a model whose bound exceeds a GPU's free memory) is a
// lower bound of what LoadWeights holds, and a tight one for a real model's shape: the fixtures
// at 1 and 2 ranks, and OPT-125m's config with random weights.
TEST(MinWeightBytesPerRank, BoundsTheLoadedBytes) {
  struct Case {
    std::string model;  // fixture name, or a config under configs/models
    bool random;
    int world;
    double tight;  // the bound is at least this share of the loaded bytes
  };
  const Case cases[] = {{"opt-preln", false, 1, 0.5},  {"opt-preln", false, 2, 0.5}, {"opt-proj", false, 1, 0.5},
                        {"llama-gqa", false, 1, 0.5},  {"llama-gqa", false, 2, 0.5}, {"llama-bias", false, 2, 0.5},
                        {"opt-125m", true, 1, 0.99},   {"opt-125m", true, 4, 0.99}};
  for (const Case& k : cases) {
    SCOPED_TRACE(::testing::Message() << k.model << " world " << k.world);
    const std::string path = k.random ? SourceDir() + "/configs/models/" + k.model + ".json" : FixtureDir(k.model);
    auto config = LoadModelConfig(path);
    ASSERT_TRUE(config.ok()) << config.status();
    std::unique_ptr<TensorSource> random;
    const TensorSource* source = nullptr;
    absl::StatusOr<std::unique_ptr<TensorSource>> checkpoint;
    if (k.random) {
      random = MakeRandomSource(0);
      source = random.get();
    } else {
      checkpoint = OpenCheckpoint(path);
      ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
      source = checkpoint->get();
    }
    for (int rank = 0; rank < k.world; ++rank) {
      auto w = LoadWeights(*config, *source, ParallelLayout{rank, k.world, {}}, DType::kF32, Device::kCpu);
      ASSERT_TRUE(w.ok()) << w.status();
      const int64_t bound = MinWeightBytesPerRank(*config, k.world, DType::kF32);
      EXPECT_LE(bound, static_cast<int64_t>(w->bytes)) << "rank " << rank;
      EXPECT_GE(static_cast<double>(bound), k.tight * static_cast<double>(w->bytes)) << "rank " << rank;
    }
    EXPECT_EQ(MinWeightBytesPerRank(*config, k.world, DType::kF16) * 2,
              MinWeightBytesPerRank(*config, k.world, DType::kF32));
  }
}

}  // namespace
}  // namespace chai::testing
