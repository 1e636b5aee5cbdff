// CHAI head clustering against scipy/scikit-learn goldens
// (tests/fixtures/clustering/make_clustering_goldens.py) plus k-means and medoid properties.
#include <chrono>
#include <cmath>
#include <limits>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/chai/clustering.h"
#include "runtime/chai/features.h"
#include "runtime/json.h"
#include "tests/support/test_paths.h"

namespace chai {
namespace {

const Json& Goldens() {
  static const Json* goldens = [] {
    auto j = ReadJsonFile(testing::FixtureDir("clustering") + "/clustering_goldens.json");
    if (!j.ok()) {
      ADD_FAILURE() << j.status();
      return new Json();
    }
    return new Json(*std::move(j));
  }();
  return *goldens;
}

const Json::Array& Section(const char* name) {
  static const Json::Array empty;
  const Json* s = Goldens().Find(name);
  if (s == nullptr || !s->is_array() || s->as_array().empty()) {
    ADD_FAILURE() << "golden section " << name << " missing";
    return empty;
  }
  return s->as_array();
}

std::vector<float> Floats(const Json& a) {
  std::vector<float> v;
  for (const Json& x : a.as_array()) v.push_back(static_cast<float>(x.as_double()));
  return v;
}
std::vector<double> Doubles(const Json& a) {
  std::vector<double> v;
  for (const Json& x : a.as_array()) v.push_back(x.as_double());
  return v;
}
std::vector<int> Ints(const Json& a) {
  std::vector<int> v;
  for (const Json& x : a.as_array()) v.push_back(static_cast<int>(x.as_double()));
  return v;
}
int Int(const Json& obj, const char* key) { return static_cast<int>(obj.Find(key)->as_double()); }

bool SamePartition(const std::vector<int>& a, const std::vector<int>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    for (size_t j = 0; j < a.size(); ++j) {
      if ((a[i] == a[j]) != (b[i] == b[j])) return false;
    }
  }
  return true;
}

TEST(ChaiClusteringTest, CosineDistancesMatchScipyBitForBit) {
  int checked = 0;
  for (const Json& c : Section("feature_cases")) {
    const Json* expected = c.Find("distances");
    if (expected == nullptr) continue;
    int n = Int(c, "n"), f = Int(c, "f");
    std::vector<double> got = CosineDistances(Floats(*c.Find("features")), n, f);
    std::vector<double> want = Doubles(*expected);
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_EQ(got[i], want[i]) << c.Find("name")->as_string() << " entry " << i;
    }
    ++checked;
  }
  EXPECT_GE(checked, 3);
}

TEST(ChaiClusteringTest, AgglomerativeMatchesSklearnOnFeatures) {
  int checked = 0;
  for (const Json& c : Section("feature_cases")) {
    const std::string name = c.Find("name")->as_string();
    int n = Int(c, "n"), f = Int(c, "f");
    std::vector<float> features = Floats(*c.Find("features"));
    for (const Json& e : c.Find("clusters")->as_array()) {
      int k = Int(e, "k");
      EXPECT_EQ(ClusterHeads(features.data(), n, f, k, ClusterMethod::kAgglomerative,
                             RepMethod::kLowest, 0),
                Ints(*e.Find("lowest")))
          << name << " k=" << k;
      EXPECT_EQ(ClusterHeads(features.data(), n, f, k, ClusterMethod::kAgglomerative,
                             RepMethod::kMedoid, 0),
                Ints(*e.Find("medoid")))
          << name << " k=" << k;
      ++checked;
    }
  }
  EXPECT_GE(checked, 50);
}

// Integer distance matrices are full of exact ties, also after Lance-Williams averaging: the
// result must still be scipy's partition, which pins down the tie-breaking rule.
TEST(ChaiClusteringTest, AverageLinkageMatchesScipyWithTies) {
  int checked = 0;
  for (const Json& c : Section("tie_cases")) {
    const std::string name = c.Find("name")->as_string();
    int n = Int(c, "n");
    std::vector<double> dist = Doubles(*c.Find("dist"));
    for (const Json& e : c.Find("clusters")->as_array()) {
      int k = Int(e, "k");
      std::vector<int> labels = AverageLinkage(dist, n, k);
      EXPECT_EQ(Representatives(labels), Ints(*e.Find("lowest"))) << name << " k=" << k;
      EXPECT_EQ(std::set<int>(labels.begin(), labels.end()).size(), static_cast<size_t>(k));
      ++checked;
    }
  }
  EXPECT_GE(checked, 40);
}

TEST(ChaiClusteringTest, AttentionFeaturesMatchNumpyIncludingGqa) {
  int checked = 0;
  for (const Json& c : Section("attention_cases")) {
    const std::string name = c.Find("name")->as_string();
    int heads = Int(c, "heads"), kv = Int(c, "kv_heads"), d = Int(c, "head_dim");
    std::vector<float> q = Floats(*c.Find("q")), k = Floats(*c.Find("k"));
    std::vector<float> got =
        AttentionFeatures(q.data(), k.data(), heads, kv, d, Int(c, "q_stride"), Int(c, "k_stride"));
    std::vector<double> want = Doubles(*c.Find("features"));
    ASSERT_EQ(got.size(), want.size()) << name;
    for (size_t i = 0; i < got.size(); ++i) {
      ASSERT_NEAR(got[i], want[i], 1e-6) << name << " value " << i;
    }
    // Rows are probability distributions.
    for (int r = 0; r < heads * kChaiFeatureTokens; ++r) {
      double s = 0;
      for (int j = 0; j < kChaiFeatureTokens; ++j) s += got[r * kChaiFeatureTokens + j];
      EXPECT_NEAR(s, 1.0, 1e-6);
    }
    // The whole pipeline, q/k to representatives, against sklearn on numpy's features.
    for (const Json& e : c.Find("clusters")->as_array()) {
      int kk = Int(e, "k");
      EXPECT_EQ(ClusterHeads(got.data(), heads, kChaiFeatureSize, kk, ClusterMethod::kAgglomerative,
                             RepMethod::kLowest, 0),
                Ints(*e.Find("lowest")))
          << name << " k=" << kk;
    }
    ++checked;
  }
  EXPECT_GE(checked, 5);
}

TEST(ChaiClusteringTest, RepresentativesAreLowestAndMedoid) {
  std::vector<int> labels = {2, 0, 2, 1, 0, 2};
  EXPECT_EQ(Representatives(labels), (std::vector<int>{0, 1, 0, 3, 1, 0}));
  // Cluster {0, 2, 5}: sums 0: 3+1=4, 2: 3+1=4, 5: 1+1=2 -> 5. Cluster {1, 4}: tie -> 1.
  const int n = 6;
  std::vector<double> dist(n * n, 9.0);
  auto set = [&](int a, int b, double v) { dist[a * n + b] = dist[b * n + a] = v; };
  for (int i = 0; i < n; ++i) set(i, i, 0.0);
  set(0, 2, 3.0);
  set(0, 5, 1.0);
  set(2, 5, 1.0);
  set(1, 4, 0.5);
  EXPECT_EQ(RepresentativesMedoid(labels, dist), (std::vector<int>{5, 1, 5, 3, 1, 5}));
  EXPECT_EQ(UniqueRepresentatives({5, 1, 5, 3, 1, 5}), (std::vector<int>{1, 3, 5}));
}

TEST(ChaiClusteringTest, AverageLinkageLabelsAreCanonical) {
  // Two obvious groups {0, 2} and {1, 3}: labels numbered by lowest member.
  const int n = 4;
  std::vector<double> dist = {0, 5, 1, 5,  //
                              5, 0, 5, 2,  //
                              1, 5, 0, 5,  //
                              5, 2, 5, 0};
  EXPECT_EQ(AverageLinkage(dist, n, 2), (std::vector<int>{0, 1, 0, 1}));
  EXPECT_EQ(AverageLinkage(dist, n, 1), (std::vector<int>{0, 0, 0, 0}));
  EXPECT_EQ(AverageLinkage(dist, n, 4), (std::vector<int>{0, 1, 2, 3}));
  EXPECT_EQ(AverageLinkage(dist, n, 3), (std::vector<int>{0, 1, 0, 2}));
}

TEST(ChaiClusteringTest, ClusterHeadsIdentityWhenDense) {
  std::vector<float> features(7 * 25, 0.04f);  // all identical: would collapse if clustered
  std::vector<int> identity = {0, 1, 2, 3, 4, 5, 6};
  for (ClusterMethod m : {ClusterMethod::kAgglomerative, ClusterMethod::kKMeans}) {
    for (RepMethod r : {RepMethod::kLowest, RepMethod::kMedoid}) {
      EXPECT_EQ(ClusterHeads(features.data(), 7, 25, 7, m, r, 1), identity);
    }
  }
  EXPECT_EQ(
      ClusterHeads(features.data(), 7, 25, 1, ClusterMethod::kAgglomerative, RepMethod::kLowest, 0),
      std::vector<int>(7, 0));
}

TEST(ChaiClusteringTest, NonFiniteFeaturesDoNotBreakClustering) {
  std::mt19937_64 rng(3);
  std::uniform_real_distribution<float> u(0.f, 1.f);
  std::vector<float> features(10 * 25);
  for (float& x : features) x = u(rng);
  features[3 * 25 + 4] = std::numeric_limits<float>::quiet_NaN();
  for (int c = 0; c < 25; ++c) features[6 * 25 + c] = 0.f;  // zero row
  std::vector<double> dist = CosineDistances(features, 10, 25);
  for (double d : dist) EXPECT_TRUE(std::isfinite(d));
  for (int k = 1; k <= 10; ++k) {
    std::vector<int> rep = ClusterHeads(features.data(), 10, 25, k, ClusterMethod::kAgglomerative,
                                        RepMethod::kLowest, 0);
    EXPECT_EQ(UniqueRepresentatives(rep).size(), static_cast<size_t>(k));
    rep = ClusterHeads(features.data(), 10, 25, k, ClusterMethod::kKMeans, RepMethod::kMedoid, 0);
    EXPECT_EQ(UniqueRepresentatives(rep).size(), static_cast<size_t>(k));
  }
}

void CheckKMeansValid(const std::vector<int>& labels, int n, int k) {
  ASSERT_EQ(labels.size(), static_cast<size_t>(n));
  std::vector<int> count(k, 0);
  for (int l : labels) {
    ASSERT_GE(l, 0);
    ASSERT_LT(l, k);
    ++count[l];
  }
  for (int c = 0; c < k; ++c) EXPECT_GT(count[c], 0) << "cluster " << c << " empty";
  EXPECT_EQ(labels[0], 0);  // numbered by lowest member
}

TEST(ChaiClusteringTest, KMeansDeterministicAndValid) {
  for (const Json& c : Section("feature_cases")) {
    int n = Int(c, "n"), f = Int(c, "f");
    std::vector<float> features = Floats(*c.Find("features"));
    for (const Json& e : c.Find("clusters")->as_array()) {
      int k = Int(e, "k");
      for (uint64_t seed : {0ull, 1ull, 12345ull}) {
        std::vector<int> a = KMeansLabels(features.data(), n, f, k, seed);
        CheckKMeansValid(a, n, k);
        EXPECT_EQ(a, KMeansLabels(features.data(), n, f, k, seed)) << "seed " << seed;
      }
      std::vector<int> rep =
          ClusterHeads(features.data(), n, f, k, ClusterMethod::kKMeans, RepMethod::kLowest, 7);
      EXPECT_EQ(UniqueRepresentatives(rep).size(), static_cast<size_t>(k));
    }
  }
}

TEST(ChaiClusteringTest, KMeansFillsClustersWithDuplicatePoints) {
  // 3 distinct rows among 8 points, k = 6: clusters must still be non-empty.
  std::vector<float> features;
  const float rows[3][4] = {{1, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, 1, 1}};
  for (int i : {0, 1, 0, 2, 2, 1, 0, 2}) features.insert(features.end(), rows[i], rows[i] + 4);
  for (int k = 1; k <= 8; ++k) CheckKMeansValid(KMeansLabels(features.data(), 8, 4, k, 99), 8, k);
}

TEST(ChaiClusteringTest, KMeansRecoversSeparatedGroups) {
  // 4 well separated directions, 32 heads, tiny noise: every seed finds the groups.
  std::mt19937_64 rng(11);
  std::normal_distribution<float> noise(0.f, 1e-4f);
  const int n = 32, f = 25, groups = 4;
  std::vector<int> truth(n);
  std::vector<float> features(n * f);
  for (int i = 0; i < n; ++i) {
    truth[i] = (i * 7) % groups;
    for (int c = 0; c < f; ++c) {
      features[i * f + c] = (c % groups == truth[i] ? 1.f : 0.05f) + noise(rng);
    }
  }
  for (uint64_t seed = 0; seed < 10; ++seed) {
    EXPECT_TRUE(SamePartition(KMeansLabels(features.data(), n, f, groups, seed), truth))
        << "seed " << seed;
  }
  EXPECT_TRUE(SamePartition(AverageLinkage(CosineDistances(features, n, f), n, groups), truth));
}

TEST(ChaiClusteringTest, ParseMethodNames) {
  EXPECT_EQ(*ParseClusterMethod("agglomerative"), ClusterMethod::kAgglomerative);
  EXPECT_EQ(*ParseClusterMethod("kmeans"), ClusterMethod::kKMeans);
  EXPECT_EQ(*ParseRepMethod("lowest"), RepMethod::kLowest);
  EXPECT_EQ(*ParseRepMethod("medoid"), RepMethod::kMedoid);
  EXPECT_FALSE(ParseClusterMethod("spectral").ok());
  EXPECT_FALSE(ParseRepMethod("centroid").ok());
  EXPECT_STREQ(ClusterMethodName(ClusterMethod::kKMeans), "kmeans");
  EXPECT_STREQ(RepMethodName(RepMethod::kMedoid), "medoid");
}

// The runtime clusters every layer of every sequence: H = 128 must take microseconds.
TEST(ChaiClusteringTest, AverageLinkageIsFastForH128) {
  const int n = 128;
  std::mt19937_64 rng(5);
  std::uniform_real_distribution<float> u(0.f, 1.f);
  std::vector<float> features(n * kChaiFeatureSize);
  for (float& x : features) x = u(rng);
  const int reps = 50;
  auto start = std::chrono::steady_clock::now();
  size_t sink = 0;
  for (int r = 0; r < reps; ++r) {
    sink += ClusterHeads(features.data(), n, kChaiFeatureSize, 16, ClusterMethod::kAgglomerative,
                         RepMethod::kLowest, 0)[n - 1];
  }
  double us =
      std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count() /
      reps;
  std::printf("ClusterHeads H=128 k=16 (distances + linkage): %.1f us per call (%zu)\n", us, sink);
  EXPECT_LT(us, 20000.0);  // generous for loaded CI machines; typically well under 1 ms
}

}  // namespace
}  // namespace chai
