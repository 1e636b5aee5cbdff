// The ChaiCluster op on the CPU against runtime/chai (AttentionFeatures, ClusterHeads and
// ChaiPolicy's lowest-original-index mapping) on the same inputs: features bit for bit and
// identical representatives, for MHA and GQA, every cluster count, queries split between an early
// buffer and the step's rows, exact ties, and rows outside the batch left alone. The clustering
// steps alone against scipy on integer distance matrices (ties after averaging too).
#include <limits>
#include <random>
#include <set>
#include <string>

#include "gtest/gtest.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/ops.h"
#include "runtime/chai/clustering.h"
#include "runtime/json.h"
#include "tests/support/chai_cluster_cases.h"
#include "tests/support/engine_helpers.h"
#include "tests/support/test_paths.h"

namespace chai::testing {
namespace {

std::string Describe(const ClusterCase& c) {
  return "heads " + std::to_string(c.heads) + " kv_heads " + std::to_string(c.kv_heads) + " d " +
         std::to_string(c.head_dim) + " k " + std::to_string(c.clusters) + " saved " + std::to_string(c.saved);
}

// Runs one op call over `cases` and checks every case and the untouched rows.
void CheckBatch(const std::vector<ClusterCase>& cases, std::mt19937& rng) {
  ClusterBatch b = MakeClusterBatch(cases, DType::kF32, Device::kCpu, rng);
  const int heads = cases.front().heads, n = static_cast<int>(cases.size());
  Tensor features = Tensor::Empty({n, heads, 25}, DType::kF32);
  std::fill_n(features.data<float>(), features.numel(), std::numeric_limits<float>::quiet_NaN());
  ops::ChaiCluster(b.problems, b.kv, b.order, &b.maps, &features);
  for (int c = 0; c < n; ++c) {
    SCOPED_TRACE(Describe(cases[c]));
    const std::vector<float> ref = ReferenceFeatures(cases[c]);
    const float* got = features.data<float>() + int64_t{c} * heads * 25;
    EXPECT_EQ(std::vector<float>(got, got + ref.size()), ref);
    EXPECT_EQ(IntRow(b.maps, b.rows[c]), ReferenceRepresentatives(cases[c]));
  }
  const std::set<int> used(b.rows.begin(), b.rows.end());
  for (int r = 0; r < b.maps.dim(0); ++r) {
    if (used.count(r) == 0) {
      EXPECT_EQ(IntRow(b.maps, r), std::vector<int>(heads, -7)) << "row " << r;
    }
  }
}

// Cluster counts to try: all of them for small head counts.
std::vector<int> Counts(int heads) {
  if (heads <= 16) {
    std::vector<int> all;
    for (int k = 1; k <= heads; ++k) all.push_back(k);
    return all;
  }
  return {1, 2, 3, heads / 4, heads / 2, heads - 1, heads};
}

TEST(ChaiClusterOp, MatchesRuntimeOnRandomInputs) {
  std::mt19937 rng(7);
  for (auto [heads, kv_heads, d] : {std::tuple{1, 1, 8}, {4, 2, 16}, {8, 8, 64}, {8, 2, 32}, {12, 12, 32},
                                    {32, 8, 64}, {40, 40, 16}, {64, 8, 8}, {128, 128, 8}}) {
    for (int prototypes : {0, 3}) {
      std::vector<ClusterCase> cases;
      int saved = 0;
      for (int k : Counts(heads)) {
        cases.push_back(RandomCase(rng, heads, kv_heads, d, k, saved, prototypes));
        saved = (saved + 1) % 5;
      }
      CheckBatch(cases, rng);
    }
  }
}

TEST(ChaiClusterOp, MatchesRuntimeOnExactTies) {
  std::mt19937 rng(11);
  for (auto [heads, kv_heads] : {std::pair{16, 16}, {16, 4}, {40, 8}}) {
    std::vector<ClusterCase> cases;
    for (int k : Counts(heads)) {
      // Pairs and a chain of copies.
      ClusterCase c = RandomCase(rng, heads, kv_heads, 16, k, k % 5);
      CopyHead(&c, 0, 5);
      CopyHead(&c, 3, 9);
      CopyHead(&c, 9, 12);
      CopyHead(&c, heads - 1, 2);
      cases.push_back(c);
      // Every head the same: all distances tie.
      ClusterCase same = RandomCase(rng, heads, kv_heads, 16, k, 0);
      for (int h = 1; h < heads; ++h) CopyHead(&same, 0, h);
      cases.push_back(same);
      // Two groups of identical heads.
      ClusterCase two = RandomCase(rng, heads, kv_heads, 16, k, 4);
      for (int h = 2; h < heads; ++h) CopyHead(&two, h % 2, h);
      cases.push_back(two);
    }
    CheckBatch(cases, rng);
  }
}

// The shared linkage steps (which the CUDA kernel runs too) on scipy's tie-heavy matrices.
TEST(ChaiClusterOp, LinkageMatchesScipyOnTieMatrices) {
  auto goldens = ReadJsonFile(FixtureDir("clustering") + "/clustering_goldens.json");
  ASSERT_TRUE(goldens.ok()) << goldens.status();
  int checked = 0;
  for (const char* section : {"tie_cases", "feature_cases"}) {
    for (const Json& c : goldens->Find(section)->as_array()) {
      const int n = static_cast<int>(c.Find("n")->as_double());
      std::vector<double> dist;
      if (const Json* given = c.Find("dist")) {
        for (const Json& v : given->as_array()) dist.push_back(v.as_double());
      } else {  // feature cases: scipy's distances, which CosineDistances reproduces bit for bit
        std::vector<float> features;
        for (const Json& v : c.Find("features")->as_array()) features.push_back(static_cast<float>(v.as_double()));
        dist = CosineDistances(features, n, static_cast<int>(c.Find("f")->as_double()));
      }
      ASSERT_EQ(dist.size(), static_cast<size_t>(n) * n);
      for (int i = 0; i < n; ++i) {  // the upper triangle, mirrored, as AverageLinkage reads it
        dist[static_cast<size_t>(i) * n + i] = 0;
        for (int j = 0; j < i; ++j) dist[static_cast<size_t>(i) * n + j] = dist[static_cast<size_t>(j) * n + i];
      }
      for (const Json& e : c.Find("clusters")->as_array()) {
        const int k = static_cast<int>(e.Find("k")->as_double());
        const std::vector<int> roots = cpu::AverageLinkageRoots(dist, n, k);
        EXPECT_EQ(roots, Representatives(AverageLinkage(dist, n, k))) << c.Find("name")->as_string() << " k=" << k;
        if (const Json* lowest = e.Find("lowest")) {
          EXPECT_EQ(roots, JsonIds(*lowest)) << c.Find("name")->as_string() << " k=" << k;
        }
        ++checked;
      }
    }
  }
  EXPECT_GE(checked, 60);
}

}  // namespace
}  // namespace chai::testing
