// Elbow curves, knees and head affinities on features with planted cluster structure, where the
// right answers are known.
#include <cmath>
#include <random>

#include "gtest/gtest.h"
#include "runtime/calibrate/affinity.h"
#include "runtime/calibrate/elbow.h"
#include "runtime/calibrate/knee.h"
#include "runtime/chai/features.h"

namespace chai {
namespace {

constexpr int kF = kChaiFeatureSize;

// `heads` feature rows in `groups` groups of near-identical rows (noise `noise`), softmax-like
// positive values; heads are assigned to groups round-robin so groups are not contiguous.
std::vector<float> Planted(int heads, int groups, double noise, std::mt19937_64& rng) {
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::vector<std::vector<double>> centers(groups, std::vector<double>(kF));
  for (auto& c : centers)
    for (double& x : c) x = std::pow(u(rng), 4);  // peaky, like attention rows
  std::vector<float> out(heads * kF);
  for (int h = 0; h < heads; ++h)
    for (int j = 0; j < kF; ++j) out[h * kF + j] = static_cast<float>(centers[h % groups][j] + noise * u(rng));
  return out;
}

TEST(Knee, SharpElbow) { EXPECT_EQ(KneeOfCurve({10, 5, 1, 0.8, 0.6, 0.4, 0.2, 0}), 3); }

TEST(Knee, ExponentialDecay) {
  std::vector<double> curve;
  for (int k = 1; k <= 12; ++k) curve.push_back(std::exp(-0.7 * k) - std::exp(-0.7 * 12));
  const int knee = KneeOfCurve(curve);
  EXPECT_GE(knee, 3);
  EXPECT_LE(knee, 5);
}

TEST(Knee, DegenerateCurves) {
  EXPECT_EQ(KneeOfCurve({}), 1);
  EXPECT_EQ(KneeOfCurve({0}), 1);
  EXPECT_EQ(KneeOfCurve({0, 0, 0, 0}), 1);      // every head identical: one cluster
  EXPECT_EQ(KneeOfCurve({3, 2, 1, 0}), 4);      // straight: clustering never pays extra
  EXPECT_EQ(KneeOfCurve({3, 2.9, 2.5, 0}), 4);  // concave: keep the layer dense
}

TEST(Knee, ScaleInvariant) {
  const std::vector<double> a = {10, 5, 1, 0.8, 0.6, 0.4, 0.2, 0};
  std::vector<double> b;
  for (double x : a) b.push_back(1e-3 * x);
  EXPECT_EQ(KneeOfCurve(a), KneeOfCurve(b));
}

TEST(Elbow, WithinClusterError) {
  const std::vector<double> rows = {0, 0, 2, 0, 10, 10};             // 3 rows of 2
  EXPECT_DOUBLE_EQ(WithinClusterError(rows, 3, 2, {0, 0, 1}), 2.0);  // mean (1,0): 1 + 1
  EXPECT_DOUBLE_EQ(WithinClusterError(rows, 3, 2, {0, 1, 2}), 0.0);
}

TEST(Elbow, UnitRows) {
  const float rows[4] = {3, 4, 0, 0};
  const std::vector<double> u = UnitRows(rows, 2, 2);
  EXPECT_DOUBLE_EQ(u[0], 0.6);
  EXPECT_DOUBLE_EQ(u[1], 0.8);
  EXPECT_EQ(u[2], 0.0);  // a zero row stays zero
}

TEST(Elbow, PlantedGroupsGiveKneeAtGroupCount) {
  std::mt19937_64 rng(7);
  std::vector<std::vector<float>> samples;
  for (int s = 0; s < 6; ++s) samples.push_back(Planted(12, 3, 1e-3, rng));
  const std::vector<double> curve = ElbowCurve(samples, 12, kF, {});
  ASSERT_EQ(curve.size(), 12u);
  EXPECT_GT(curve[1], 100 * curve[2]);  // 2 clusters leave a group split apart; 3 leave noise
  EXPECT_EQ(curve[11], 0.0);
  for (int k = 1; k < 12; ++k) EXPECT_LE(curve[k], curve[k - 1] + 1e-12) << "k=" << k + 1;
  EXPECT_EQ(KneeOfCurve(curve), 3);
}

TEST(Elbow, DeterministicAndRestartsNeverHurt) {
  std::mt19937_64 rng(3);
  std::vector<std::vector<float>> samples = {Planted(12, 5, 0.2, rng), Planted(12, 4, 0.2, rng)};
  ElbowOptions one{1, 0}, four{4, 0};
  EXPECT_EQ(ElbowCurve(samples, 12, kF, four), ElbowCurve(samples, 12, kF, four));
  const auto a = ElbowCurve(samples, 12, kF, one), b = ElbowCurve(samples, 12, kF, four);
  for (int k = 0; k < 12; ++k) EXPECT_LE(b[k], a[k] + 1e-12);
}

TEST(Elbow, ResistanceRanksSpreadOutLayersHigher) {
  std::mt19937_64 rng(11);
  std::vector<std::vector<float>> tight, spread;
  for (int s = 0; s < 4; ++s) {
    tight.push_back(Planted(8, 2, 1e-3, rng));
    spread.push_back(Planted(8, 8, 1e-3, rng));
  }
  EXPECT_LT(ClusteringResistance(ElbowCurve(tight, 8, kF, {}), 4, 8),
            ClusteringResistance(ElbowCurve(spread, 8, kF, {}), 4, 8));
}

TEST(Affinity, PlantedGroupsShareAlways) {
  std::mt19937_64 rng(5);
  LayerSampleFeatures features(2);
  for (int s = 0; s < 5; ++s) {
    features[0].push_back(Planted(6, 3, 1e-3, rng));
    features[1].push_back(Planted(6, 3, 1e-3, rng));
  }
  const HeadAffinity a = ComputeHeadAffinity(features, {3, 6}, 6);
  ASSERT_EQ(a.size(), 2u);
  for (int i = 0; i < 6; ++i)
    for (int j = 0; j < 6; ++j) {
      EXPECT_DOUBLE_EQ(a[0][i][j], i % 3 == j % 3 ? 1.0 : 0.0) << i << "," << j;
      EXPECT_DOUBLE_EQ(a[1][i][j], i == j ? 1.0 : 0.0);  // dense layer: nobody shares
      EXPECT_DOUBLE_EQ(a[0][i][j], a[0][j][i]);
    }
  const HeadAffinity km = ComputeHeadAffinity(features, {3, 6}, 6, ClusterMethod::kKMeans);
  EXPECT_EQ(km[0], a[0]);
}

}  // namespace
}  // namespace chai
