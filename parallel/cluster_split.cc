#include "parallel/cluster_split.h"

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace chai {

absl::StatusOr<std::vector<int>> SplitClusterCount(int k, const std::vector<int>& local_heads) {
  const int ranks = static_cast<int>(local_heads.size());
  if (ranks == 0) return absl::InvalidArgumentError("SplitClusterCount: no ranks");
  int64_t total = 0;
  for (int r = 0; r < ranks; ++r) {
    if (local_heads[r] < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("SplitClusterCount: rank ", r, " holds ", local_heads[r], " heads"));
    }
    total += local_heads[r];
  }
  if (k < ranks) {
    return absl::InvalidArgumentError(absl::StrCat(
        k, " clusters cannot be split over ", ranks,
        " ranks: every rank clusters its own heads and needs at least one cluster"));
  }
  if (k > total) {
    return absl::InvalidArgumentError(
        absl::StrCat(k, " clusters is more than the ", total, " heads to cluster"));
  }

  // Largest remainder: quota k*h_r/total, floor first, then one more to the largest remainders.
  std::vector<int> counts(ranks);
  std::vector<int64_t> remainder(ranks);
  int64_t given = 0;
  for (int r = 0; r < ranks; ++r) {
    int64_t scaled = static_cast<int64_t>(k) * local_heads[r];
    counts[r] = static_cast<int>(scaled / total);
    remainder[r] = scaled % total;
    given += counts[r];
  }
  for (int64_t left = k - given; left > 0; --left) {
    int best = -1;
    for (int r = 0; r < ranks; ++r) {
      if (remainder[r] > 0 && (best < 0 || remainder[r] > remainder[best])) best = r;
    }
    ++counts[best];
    remainder[best] = 0;
  }
  // Quotas never exceed h_r (k <= total), but may floor to 0 on a rank with few heads.
  for (int r = 0; r < ranks; ++r) {
    if (counts[r] > 0) continue;
    int donor = -1;
    for (int d = 0; d < ranks; ++d) {
      if (counts[d] > 1 && (donor < 0 || counts[d] >= counts[donor])) donor = d;
    }
    --counts[donor];  // exists: k >= ranks, so some rank holds more than one
    counts[r] = 1;
  }
  return counts;
}

absl::StatusOr<std::vector<int>> SplitClusterCount(int k, int heads, int world_size) {
  if (world_size < 1 || heads < 1 || heads % world_size != 0) {
    return absl::InvalidArgumentError(absl::StrCat("SplitClusterCount: ", heads,
                                                   " heads cannot be split evenly over ",
                                                   world_size, " ranks"));
  }
  return SplitClusterCount(k, std::vector<int>(world_size, heads / world_size));
}

absl::StatusOr<std::vector<std::vector<int>>> SplitSchedule(const std::vector<int>& layer_clusters,
                                                            int heads, int world_size) {
  std::vector<std::vector<int>> split;
  split.reserve(layer_clusters.size());
  for (size_t l = 0; l < layer_clusters.size(); ++l) {
    absl::StatusOr<std::vector<int>> counts = SplitClusterCount(layer_clusters[l], heads, world_size);
    if (!counts.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("CHAI schedule layer ", l, ": ", counts.status().message()));
    }
    split.push_back(*std::move(counts));
  }
  return split;
}

}  // namespace chai
