#include "parallel/head_placement.h"

#include <algorithm>
#include <numeric>
#include <random>
#include <set>

#include "gtest/gtest.h"
#include "parallel/cluster_split.h"

namespace chai {
namespace {

using Matrix = std::vector<std::vector<double>>;

uint32_t FreshSeed() {
  uint32_t seed = std::random_device()();
  std::printf("seed %u\n", seed);
  return seed;
}

Matrix Noise(int heads, double scale, std::mt19937& rng) {
  std::uniform_real_distribution<double> u(0.0, scale);
  Matrix m(heads, std::vector<double>(heads, 0.0));
  for (int i = 0; i < heads; ++i) {
    for (int j = i + 1; j < heads; ++j) m[i][j] = m[j][i] = u(rng);
  }
  return m;
}

// Units (heads, or KV groups of `group_size` heads) shuffled into `blocks` planted groups with
// strong mutual affinity over noise. Returns the planted groups of units.
std::vector<std::vector<int>> Plant(Matrix* m, int group_size, int blocks, std::mt19937& rng) {
  const int units = static_cast<int>(m->size()) / group_size;
  std::vector<int> order(units);
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), rng);
  std::vector<std::vector<int>> planted(blocks);
  const int per_block = units / blocks;
  for (int u = 0; u < units; ++u) planted[u / per_block].push_back(order[u]);
  std::uniform_real_distribution<double> strong(0.8, 1.0);
  for (const auto& block : planted) {
    for (int a : block) {
      for (int b : block) {
        if (a >= b) continue;
        for (int i = 0; i < group_size; ++i) {
          for (int j = 0; j < group_size; ++j) {
            double v = strong(rng);
            (*m)[a * group_size + i][b * group_size + j] = v;
            (*m)[b * group_size + j][a * group_size + i] = v;
          }
        }
      }
    }
  }
  return planted;
}

void ExpectCanonical(const HeadPlacement& p) {
  const int per_rank = p.heads_per_rank();
  for (int l = 0; l < p.layers(); ++l) {
    int previous_first = -1;
    for (int r = 0; r < p.world_size; ++r) {
      std::vector<int> local = p.LocalHeads(l, r);
      ASSERT_EQ(static_cast<int>(local.size()), per_rank);
      EXPECT_TRUE(std::is_sorted(local.begin(), local.end())) << "layer " << l << " rank " << r;
      EXPECT_GT(local.front(), previous_first);
      previous_first = local.front();
    }
  }
}

TEST(HeadPlacement, IdentityIsValidAndContiguous) {
  HeadPlacement p = HeadPlacement::Identity(3, 8, 4);
  EXPECT_TRUE(p.Validate(3, 8, 4).ok());
  EXPECT_TRUE(p.IsIdentity());
  EXPECT_EQ(p.heads_per_rank(), 2);
  EXPECT_EQ(p.LocalHeads(1, 2), (std::vector<int>{4, 5}));
  EXPECT_EQ(p.RankOf(2, 7), 3);
  EXPECT_TRUE(p.Validate(3, 8, 4, /*group_size=*/2).ok());
}

TEST(HeadPlacement, ValidateRejectsBadPlacements) {
  EXPECT_FALSE(HeadPlacement::Identity(2, 12, 8).Validate(2, 12, 8).ok());  // 12 heads on 8 ranks
  HeadPlacement p = HeadPlacement::Identity(2, 8, 2);
  EXPECT_FALSE(p.Validate(3, 8, 2).ok());  // layer count
  EXPECT_FALSE(p.Validate(2, 8, 4).ok());  // world size
  EXPECT_FALSE(p.Validate(2, 16, 2).ok());  // head count
  EXPECT_FALSE(p.Validate(2, 8, 2, /*group_size=*/3).ok());
  EXPECT_FALSE(p.Validate(2, 8, 8, /*group_size=*/2).ok());  // 4 KV heads on 8 ranks

  HeadPlacement dup = p;
  dup.layer_perm[1][3] = 0;
  absl::Status s = dup.Validate(2, 8, 2);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("permutation"), std::string::npos) << s;

  HeadPlacement out_of_range = p;
  out_of_range.layer_perm[0][0] = 8;
  EXPECT_FALSE(out_of_range.Validate(2, 8, 2).ok());

  // Valid permutation, but it splits KV groups {2,3} and reverses {0,1}.
  HeadPlacement split = p;
  split.layer_perm[0] = {0, 2, 1, 3, 4, 5, 6, 7};
  EXPECT_TRUE(split.Validate(2, 8, 2).ok());
  EXPECT_FALSE(split.Validate(2, 8, 2, /*group_size=*/2).ok());
  split.layer_perm[0] = {1, 0, 2, 3, 4, 5, 6, 7};
  EXPECT_FALSE(split.Validate(2, 8, 2, /*group_size=*/2).ok());
  split.layer_perm[0] = {4, 5, 0, 1, 2, 3, 6, 7};  // groups moved whole: fine
  EXPECT_TRUE(split.Validate(2, 8, 2, /*group_size=*/2).ok());
}

TEST(PlanPlacement, KeepsPlantedGroupsWhole) {
  std::mt19937 rng(FreshSeed());
  const std::vector<std::pair<int, int>> layouts = {{8, 2}, {12, 3}, {16, 4}, {32, 2}, {32, 4},
                                                     {32, 8}, {40, 4}, {64, 8}, {96, 4}, {128, 8}};
  for (auto [heads, world] : layouts) {
    HeadAffinity affinity;
    std::vector<std::vector<std::vector<int>>> planted;
    for (int l = 0; l < 3; ++l) {
      Matrix m = Noise(heads, 0.3, rng);
      planted.push_back(Plant(&m, 1, world, rng));
      affinity.push_back(std::move(m));
    }
    absl::StatusOr<HeadPlacement> p = PlanPlacement(affinity, world);
    ASSERT_TRUE(p.ok()) << p.status();
    ASSERT_TRUE(p->Validate(3, heads, world).ok()) << p->Validate(3, heads, world);
    ExpectCanonical(*p);
    for (int l = 0; l < 3; ++l) {
      for (const std::vector<int>& group : planted[l]) {
        std::set<int> ranks;
        for (int h : group) ranks.insert(p->RankOf(l, h));
        EXPECT_EQ(ranks.size(), 1u) << "heads " << heads << " world " << world << " layer " << l;
      }
    }
    EXPECT_GE(KeptAffinity(*p, affinity),
              KeptAffinity(HeadPlacement::Identity(3, heads, world), affinity));
  }
}

TEST(PlanPlacement, IsDeterministic) {
  std::mt19937 rng(FreshSeed());
  HeadAffinity affinity = {Noise(32, 1.0, rng), Noise(32, 1.0, rng)};
  absl::StatusOr<HeadPlacement> a = PlanPlacement(affinity, 4);
  absl::StatusOr<HeadPlacement> b = PlanPlacement(affinity, 4);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->layer_perm, b->layer_perm);
}

// The refinement stops only where no exchange of two heads between ranks helps.
TEST(PlanPlacement, NoImprovingSwapRemains) {
  std::mt19937 rng(FreshSeed());
  const int heads = 16, world = 4;
  HeadAffinity affinity = {Noise(heads, 1.0, rng)};
  absl::StatusOr<HeadPlacement> p = PlanPlacement(affinity, world);
  ASSERT_TRUE(p.ok());
  const double kept = KeptAffinity(*p, affinity);
  for (int s = 0; s < heads; ++s) {
    for (int t = s + 1; t < heads; ++t) {
      if (s / 4 == t / 4) continue;
      HeadPlacement swapped = *p;
      std::swap(swapped.layer_perm[0][s], swapped.layer_perm[0][t]);
      EXPECT_LE(KeptAffinity(swapped, affinity), kept + 1e-9);
    }
  }
}

TEST(PlanPlacement, ContiguousBlocksGiveIdentityAndZeroAffinityToo) {
  const int heads = 16, world = 4;
  Matrix blocks(heads, std::vector<double>(heads, 0.0));
  for (int i = 0; i < heads; ++i) {
    for (int j = 0; j < heads; ++j) blocks[i][j] = (i / 4 == j / 4 && i != j) ? 1.0 : 0.0;
  }
  Matrix zero(heads, std::vector<double>(heads, 0.0));
  absl::StatusOr<HeadPlacement> p = PlanPlacement({blocks, zero}, world);
  ASSERT_TRUE(p.ok());
  EXPECT_TRUE(p->IsIdentity());
  absl::StatusOr<HeadPlacement> single = PlanPlacement({blocks}, 1);
  ASSERT_TRUE(single.ok());
  EXPECT_TRUE(single->IsIdentity());
}

TEST(PlanPlacement, GqaGroupsStayWholeAndContiguous) {
  std::mt19937 rng(FreshSeed());
  const int heads = 32, group = 4, world = 2, layers = 3;
  HeadAffinity affinity;
  std::vector<std::vector<std::vector<int>>> planted;
  for (int l = 0; l < layers; ++l) {
    Matrix m = Noise(heads, 0.3, rng);
    planted.push_back(Plant(&m, group, world, rng));
    // Strong ties between single heads of different KV groups must not break groups.
    m[1][6] = m[6][1] = 50.0;
    affinity.push_back(std::move(m));
  }
  absl::StatusOr<HeadPlacement> p = PlanPlacement(affinity, world, group);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_TRUE(p->Validate(layers, heads, world, group).ok())
      << p->Validate(layers, heads, world, group);
  ExpectCanonical(*p);
  for (int l = 0; l < layers; ++l) {
    const std::vector<int>& perm = p->layer_perm[l];
    for (int s = 0; s < heads; s += group) {
      EXPECT_EQ(perm[s] % group, 0);
      for (int i = 1; i < group; ++i) EXPECT_EQ(perm[s + i], perm[s] + i);
    }
    for (const std::vector<int>& kv_groups : planted[l]) {
      std::set<int> ranks;
      for (int g : kv_groups) {
        for (int i = 0; i < group; ++i) ranks.insert(p->RankOf(l, g * group + i));
      }
      EXPECT_EQ(ranks.size(), 1u) << "layer " << l;
    }
  }
}

TEST(PlanPlacement, RejectsBadInput) {
  Matrix ok(8, std::vector<double>(8, 0.5));
  EXPECT_TRUE(PlanPlacement({ok}, 2).ok());
  EXPECT_FALSE(PlanPlacement({}, 2).ok());
  EXPECT_FALSE(PlanPlacement({ok}, 3).ok());     // 8 heads on 3 ranks
  EXPECT_FALSE(PlanPlacement({ok}, 0).ok());
  EXPECT_FALSE(PlanPlacement({ok}, 2, 3).ok());  // groups of 3
  EXPECT_FALSE(PlanPlacement({ok}, 4, 4).ok());  // 2 KV heads on 4 ranks
  Matrix asym = ok;
  asym[1][2] = 0.9;
  EXPECT_FALSE(PlanPlacement({asym}, 2).ok());
  Matrix negative = ok;
  negative[1][2] = negative[2][1] = -0.1;
  EXPECT_FALSE(PlanPlacement({negative}, 2).ok());
  Matrix nan = ok;
  nan[3][4] = nan[4][3] = std::nan("");
  EXPECT_FALSE(PlanPlacement({nan}, 2).ok());
  Matrix ragged = ok;
  ragged[5].pop_back();
  EXPECT_FALSE(PlanPlacement({ragged}, 2).ok());
  Matrix smaller(4, std::vector<double>(4, 0.5));
  absl::StatusOr<HeadPlacement> mixed = PlanPlacement({ok, smaller}, 2);
  ASSERT_FALSE(mixed.ok());
  EXPECT_NE(mixed.status().message().find("layer 1"), std::string::npos) << mixed.status();
}

TEST(SplitClusterCount, EvenHeadsSumToKWithinBounds) {
  for (int world : {1, 2, 4, 8}) {
    for (int heads : {8, 16, 32, 40, 64}) {
      if (heads % world != 0) continue;
      const int local = heads / world;
      for (int k = world; k <= heads; ++k) {
        absl::StatusOr<std::vector<int>> split = SplitClusterCount(k, heads, world);
        ASSERT_TRUE(split.ok()) << split.status();
        ASSERT_EQ(static_cast<int>(split->size()), world);
        EXPECT_EQ(std::accumulate(split->begin(), split->end(), 0), k);
        for (int c : *split) {
          EXPECT_GE(c, 1);
          EXPECT_LE(c, local);
        }
        EXPECT_TRUE(std::is_sorted(split->rbegin(), split->rend()));  // extras to lower ranks
        EXPECT_LE(split->front() - split->back(), 1);
      }
    }
  }
  EXPECT_EQ(*SplitClusterCount(32, 32, 4), (std::vector<int>{8, 8, 8, 8}));
  EXPECT_EQ(*SplitClusterCount(6, 32, 4), (std::vector<int>{2, 2, 1, 1}));
}

TEST(SplitClusterCount, UnevenHeads) {
  EXPECT_EQ(*SplitClusterCount(4, std::vector<int>{1, 7}), (std::vector<int>{1, 3}));
  EXPECT_EQ(*SplitClusterCount(2, std::vector<int>{1, 7}), (std::vector<int>{1, 1}));
  EXPECT_EQ(*SplitClusterCount(3, std::vector<int>{1, 1, 10}), (std::vector<int>{1, 1, 1}));
  std::mt19937 rng(FreshSeed());
  for (int trial = 0; trial < 500; ++trial) {
    std::vector<int> local(1 + rng() % 6);
    int total = 0;
    for (int& h : local) total += (h = 1 + rng() % 12);
    int k = static_cast<int>(local.size()) + rng() % (total - local.size() + 1);
    absl::StatusOr<std::vector<int>> split = SplitClusterCount(k, local);
    ASSERT_TRUE(split.ok()) << split.status();
    EXPECT_EQ(std::accumulate(split->begin(), split->end(), 0), k);
    for (size_t r = 0; r < local.size(); ++r) {
      EXPECT_GE((*split)[r], 1);
      EXPECT_LE((*split)[r], local[r]);
    }
    EXPECT_EQ(*SplitClusterCount(k, local), *split);  // deterministic
  }
}

TEST(SplitClusterCount, RejectsImpossibleSplits) {
  absl::StatusOr<std::vector<int>> too_few = SplitClusterCount(4, 32, 8);
  ASSERT_FALSE(too_few.ok());
  EXPECT_NE(too_few.status().message().find("at least one cluster"), std::string::npos);
  EXPECT_FALSE(SplitClusterCount(33, 32, 4).ok());
  EXPECT_FALSE(SplitClusterCount(4, 30, 4).ok());
  EXPECT_FALSE(SplitClusterCount(4, 32, 0).ok());
  EXPECT_FALSE(SplitClusterCount(2, std::vector<int>{}).ok());
  EXPECT_FALSE(SplitClusterCount(2, std::vector<int>{2, 0}).ok());
}

TEST(SplitSchedule, LlamaScheduleOverRanks) {
  std::vector<int> schedule(32, 32);
  std::fill(schedule.begin() + 18, schedule.end(), 4);
  absl::StatusOr<std::vector<std::vector<int>>> two = SplitSchedule(schedule, 32, 2);
  ASSERT_TRUE(two.ok()) << two.status();
  ASSERT_EQ(two->size(), 32u);
  EXPECT_EQ((*two)[0], (std::vector<int>{16, 16}));
  EXPECT_EQ((*two)[31], (std::vector<int>{2, 2}));
  absl::StatusOr<std::vector<std::vector<int>>> eight = SplitSchedule(schedule, 32, 8);
  ASSERT_FALSE(eight.ok());
  EXPECT_NE(eight.status().message().find("layer 18"), std::string::npos) << eight.status();
}

}  // namespace
}  // namespace chai
