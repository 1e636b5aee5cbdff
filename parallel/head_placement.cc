#include "parallel/head_placement.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"

namespace chai {
namespace {

absl::Status CheckLayout(int heads, int world_size, int group_size) {
  if (heads < 1 || world_size < 1 || group_size < 1) {
    return absl::InvalidArgumentError(absl::StrCat("head placement: heads ", heads, ", world size ",
                                                   world_size, ", group size ", group_size,
                                                   " must all be positive"));
  }
  if (heads % group_size != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "head placement: ", heads, " query heads do not form groups of ", group_size));
  }
  if ((heads / group_size) % world_size != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "head placement: ", heads / group_size, group_size > 1 ? " KV heads" : " heads",
        " cannot be split evenly over ", world_size, " ranks"));
  }
  return absl::OkStatus();
}

// Symmetrised unit-level affinity of one layer: A[a][b] = sum of affinity over the heads of
// units a and b (a != b), A[a][a] = 0.
absl::StatusOr<std::vector<std::vector<double>>> UnitAffinity(
    const std::vector<std::vector<double>>& layer, int layer_index, int group_size) {
  const int heads = static_cast<int>(layer.size());
  for (int i = 0; i < heads; ++i) {
    if (static_cast<int>(layer[i].size()) != heads) {
      return absl::InvalidArgumentError(absl::StrCat("head affinity: layer ", layer_index, " row ",
                                                     i, " has ", layer[i].size(), " entries, not ",
                                                     heads));
    }
  }
  for (int i = 0; i < heads; ++i) {
    for (int j = 0; j < heads; ++j) {
      double a = layer[i][j], b = layer[j][i];
      if (!std::isfinite(a) || a < 0) {
        return absl::InvalidArgumentError(absl::StrCat("head affinity: layer ", layer_index, " [",
                                                       i, "][", j, "] = ", a,
                                                       " is not a finite non-negative number"));
      }
      if (std::abs(a - b) > 1e-6 * std::max({1.0, a, b})) {
        return absl::InvalidArgumentError(absl::StrCat("head affinity: layer ", layer_index,
                                                       " is not symmetric at [", i, "][", j, "]"));
      }
    }
  }
  const int units = heads / group_size;
  std::vector<std::vector<double>> unit(units, std::vector<double>(units, 0.0));
  for (int i = 0; i < heads; ++i) {
    for (int j = 0; j < heads; ++j) {
      int a = i / group_size, b = j / group_size;
      if (a != b) unit[a][b] += 0.5 * (layer[i][j] + layer[j][i]);
    }
  }
  return unit;
}

// Equal groups of `units` (per_rank each) for one layer; returns rank_of[unit].
std::vector<int> PlanLayer(const std::vector<std::vector<double>>& a, int world_size) {
  const int units = static_cast<int>(a.size());
  const int per_rank = units / world_size;
  std::vector<int> rank_of(units, -1);

  // Greedy start. Ties go to the lowest unit index (strict comparisons, ascending scans).
  for (int r = 0; r < world_size; ++r) {
    int seed = -1;
    double seed_score = -1;
    for (int x = 0; x < units; ++x) {
      if (rank_of[x] != -1) continue;
      double score = 0;
      for (int y = 0; y < units; ++y) {
        if (rank_of[y] == -1) score += a[x][y];
      }
      if (score > seed_score) {
        seed = x;
        seed_score = score;
      }
    }
    rank_of[seed] = r;
    std::vector<int> members = {seed};
    while (static_cast<int>(members.size()) < per_rank) {
      int best = -1;
      double best_score = -1;
      for (int x = 0; x < units; ++x) {
        if (rank_of[x] != -1) continue;
        double score = 0;
        for (int m : members) score += a[x][m];
        if (score > best_score) {
          best = x;
          best_score = score;
        }
      }
      rank_of[best] = r;
      members.push_back(best);
    }
  }

  // Pairwise swaps: take the best improving swap until none improves by more than a
  // rounding margin. Each swap raises the objective strictly, so this terminates.
  double total = 0;
  for (const auto& row : a) total += std::accumulate(row.begin(), row.end(), 0.0);
  const double margin = 1e-12 * std::max(1.0, total);
  std::vector<std::vector<double>> tie(units, std::vector<double>(world_size));
  for (;;) {
    for (int x = 0; x < units; ++x) {  // recomputed exactly each round: no drift
      std::fill(tie[x].begin(), tie[x].end(), 0.0);
      for (int y = 0; y < units; ++y) tie[x][rank_of[y]] += a[x][y];
    }
    double best_gain = margin;
    int best_x = -1, best_y = -1;
    for (int x = 0; x < units; ++x) {
      for (int y = x + 1; y < units; ++y) {
        int p = rank_of[x], q = rank_of[y];
        if (p == q) continue;
        double gain = tie[x][q] - tie[x][p] + tie[y][p] - tie[y][q] - 2 * a[x][y];
        if (gain > best_gain) {
          best_gain = gain;
          best_x = x;
          best_y = y;
        }
      }
    }
    if (best_x < 0) break;
    std::swap(rank_of[best_x], rank_of[best_y]);
  }
  return rank_of;
}

}  // namespace

HeadPlacement HeadPlacement::Identity(int layers, int heads, int world_size) {
  HeadPlacement placement;
  placement.world_size = world_size;
  std::vector<int> identity(std::max(heads, 0));
  std::iota(identity.begin(), identity.end(), 0);
  placement.layer_perm.assign(std::max(layers, 0), identity);
  return placement;
}

absl::Status HeadPlacement::Validate(int layers, int heads, int world_size, int group_size) const {
  if (absl::Status s = CheckLayout(heads, world_size, group_size); !s.ok()) return s;
  if (this->world_size != world_size) {
    return absl::InvalidArgumentError(absl::StrCat("head placement is for world size ",
                                                   this->world_size, ", running with ", world_size));
  }
  if (static_cast<int>(layer_perm.size()) != layers) {
    return absl::InvalidArgumentError(absl::StrCat("head placement has ", layer_perm.size(),
                                                   " layers, the model has ", layers));
  }
  for (int l = 0; l < layers; ++l) {
    const std::vector<int>& perm = layer_perm[l];
    if (static_cast<int>(perm.size()) != heads) {
      return absl::InvalidArgumentError(absl::StrCat("head placement: layer ", l, " lists ",
                                                     perm.size(), " heads, the model has ", heads));
    }
    std::vector<bool> seen(heads, false);
    for (int s = 0; s < heads; ++s) {
      int h = perm[s];
      if (h < 0 || h >= heads || seen[h]) {
        return absl::InvalidArgumentError(absl::StrCat("head placement: layer ", l,
                                                       " is not a permutation of 0..", heads - 1,
                                                       " (slot ", s, " holds ", h, ")"));
      }
      seen[h] = true;
      // GQA: slot s must hold query head s%g of the group that starts at the block's first slot.
      int first = perm[s - s % group_size];
      if (first % group_size != 0 || h != first + s % group_size) {
        return absl::InvalidArgumentError(absl::StrCat(
            "head placement: layer ", l, " splits a KV group of ", group_size,
            " query heads (slot ", s, " holds head ", h, "); groups must stay contiguous and in order"));
      }
    }
  }
  return absl::OkStatus();
}

bool HeadPlacement::IsIdentity() const {
  for (const std::vector<int>& perm : layer_perm) {
    for (int s = 0; s < static_cast<int>(perm.size()); ++s) {
      if (perm[s] != s) return false;
    }
  }
  return true;
}

std::vector<int> HeadPlacement::LocalHeads(int layer, int rank) const {
  const int per_rank = heads_per_rank();
  const std::vector<int>& perm = layer_perm[layer];
  return std::vector<int>(perm.begin() + rank * per_rank, perm.begin() + (rank + 1) * per_rank);
}

int HeadPlacement::RankOf(int layer, int head) const {
  const std::vector<int>& perm = layer_perm[layer];
  int slot = static_cast<int>(std::find(perm.begin(), perm.end(), head) - perm.begin());
  return slot / heads_per_rank();
}

absl::StatusOr<HeadPlacement> PlanPlacement(const HeadAffinity& affinity, int world_size,
                                            int group_size) {
  if (affinity.empty()) return absl::InvalidArgumentError("head affinity: no layers");
  const int heads = static_cast<int>(affinity[0].size());
  if (absl::Status s = CheckLayout(heads, world_size, group_size); !s.ok()) return s;

  HeadPlacement placement;
  placement.world_size = world_size;
  for (int l = 0; l < static_cast<int>(affinity.size()); ++l) {
    if (static_cast<int>(affinity[l].size()) != heads) {
      return absl::InvalidArgumentError(absl::StrCat("head affinity: layer ", l, " has ",
                                                     affinity[l].size(), " heads, layer 0 has ",
                                                     heads));
    }
    absl::StatusOr<std::vector<std::vector<double>>> unit = UnitAffinity(affinity[l], l, group_size);
    if (!unit.ok()) return unit.status();
    std::vector<int> rank_of = PlanLayer(*unit, world_size);

    // Canonical order: units ascending within a rank; ranks ordered by their lowest unit.
    std::vector<std::vector<int>> groups(world_size);
    for (int u = 0; u < static_cast<int>(rank_of.size()); ++u) groups[rank_of[u]].push_back(u);
    std::sort(groups.begin(), groups.end());
    std::vector<int> perm;
    perm.reserve(heads);
    for (const std::vector<int>& group : groups) {
      for (int u : group) {
        for (int i = 0; i < group_size; ++i) perm.push_back(u * group_size + i);
      }
    }
    placement.layer_perm.push_back(std::move(perm));
  }
  return placement;
}

double KeptAffinity(const HeadPlacement& placement, const HeadAffinity& affinity) {
  double kept = 0;
  const int per_rank = placement.heads_per_rank();
  for (int l = 0; l < placement.layers(); ++l) {
    const std::vector<int>& perm = placement.layer_perm[l];
    for (int begin = 0; begin < static_cast<int>(perm.size()); begin += per_rank) {
      for (int i = begin; i < begin + per_rank; ++i) {
        for (int j = i + 1; j < begin + per_rank; ++j) kept += affinity[l][perm[i]][perm[j]];
      }
    }
  }
  return kept;
}

}  // namespace chai
