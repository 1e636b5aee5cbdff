// Which attention heads each tensor-parallel rank holds, layer by layer.
//
// Weights are sliced through a per-layer permutation of heads: slot s of layer l holds
// original head layer_perm[l][s], and rank r owns slots [r*H/W, (r+1)*H/W). The identity
// is Megatron's contiguous split. CHAI clusters heads per rank, so a placement that keeps
// heads which usually share a cluster on one rank keeps clustering quality while no
// attention probabilities cross GPUs. The planner chooses such a placement from a
// calibration affinity (how often two heads end up in one cluster).
#ifndef CHAI_PARALLEL_HEAD_PLACEMENT_H_
#define CHAI_PARALLEL_HEAD_PLACEMENT_H_

#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace chai {

// affinity[layer][i][j]: symmetric, non-negative, finite; the diagonal is ignored.
using HeadAffinity = std::vector<std::vector<std::vector<double>>>;

struct HeadPlacement {
  int world_size = 1;
  // layer_perm[l][slot] = original head index. Plain fields: the runtime saves them as JSON.
  std::vector<std::vector<int>> layer_perm;

  // Contiguous blocks: layer_perm[l][s] == s. Never fails; Validate() reports layouts
  // that cannot be split (heads not divisible by the world size).
  static HeadPlacement Identity(int layers, int heads, int world_size);

  // OK when there are `layers` permutations of 0..heads-1, heads divide evenly into
  // world_size ranks of whole GQA groups (`group_size` query heads per KV head), and every
  // group's query heads sit contiguously, in order, at a group-aligned slot.
  absl::Status Validate(int layers, int heads, int world_size, int group_size = 1) const;

  int layers() const { return static_cast<int>(layer_perm.size()); }
  int heads() const { return layer_perm.empty() ? 0 : static_cast<int>(layer_perm[0].size()); }
  int heads_per_rank() const { return world_size > 0 ? heads() / world_size : 0; }
  bool IsIdentity() const;
  // Original heads that `rank` owns in `layer`, in slot order (a valid placement assumed).
  std::vector<int> LocalHeads(int layer, int rank) const;
  // The rank that owns original head `head` of `layer`.
  int RankOf(int layer, int head) const;
};

// Equal-size groups of heads per rank, per layer, maximising the affinity kept inside ranks:
// a deterministic greedy start (seed with the unit most tied to the rest, grow by strongest
// ties) refined by best-improving pairwise swaps between ranks until none improves.
// Under GQA (`group_size` > 1 query heads per KV head) the unit of placement is a whole KV
// group, query heads [g*group_size, (g+1)*group_size), with affinity summed over its heads;
// the permutation still lists query heads, each group contiguous and in order.
// Canonical output: heads ascending within a rank's block, blocks ordered by their lowest head
// (so an affinity already block-diagonal in contiguous blocks gives the identity).
// Errors: ragged, asymmetric, negative or non-finite affinity; heads not divisible by
// group_size * world_size.
absl::StatusOr<HeadPlacement> PlanPlacement(const HeadAffinity& affinity, int world_size,
                                            int group_size = 1);

// Sum over layers and ranks of affinity[l][i][j] for pairs i < j held by the same rank.
// The placement must be valid for affinity's shape.
double KeptAffinity(const HeadPlacement& placement, const HeadAffinity& affinity);

}  // namespace chai

#endif  // CHAI_PARALLEL_HEAD_PLACEMENT_H_
