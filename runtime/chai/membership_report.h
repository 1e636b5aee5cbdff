// What CHAI decided for a sequence, in global terms, for --dump-clusters and --stats: the
// representative (original head index) of every head per layer, gathered from all ranks, and
// the K/V bytes per token stored over all ranks.
#ifndef CHAI_RUNTIME_CHAI_MEMBERSHIP_REPORT_H_
#define CHAI_RUNTIME_CHAI_MEMBERSHIP_REPORT_H_

#include <cstdint>
#include <vector>

#include "parallel/communicator.h"
#include "parallel/head_placement.h"
#include "runtime/model_weights.h"
#include "runtime/sequence.h"

namespace chai {

// result[layer][original head] = original index of its representative (itself when dense).
// Collective: every rank must call it.
std::vector<std::vector<int>> GlobalRepresentatives(const Sequence& seq, const ModelWeights& weights,
                                                    const HeadPlacement& placement, Communicator* comm);

struct KvBytes {
  int64_t k_per_token = 0;        // stored now, all ranks
  int64_t v_per_token = 0;
  int64_t dense_per_token = 0;    // K + V without CHAI
};
// Collective: sums over ranks.
KvBytes GlobalKvBytes(const Sequence& seq, const ModelConfig& config, DType dtype, Communicator* comm);

// Per rank: representatives (heads whose scores are computed, over all layers) and K bytes per
// token stored, to show how evenly CHAI's savings fall across GPUs. Collective.
struct RankKv {
  int representatives = 0;
  int64_t k_bytes_per_token = 0;
};
std::vector<RankKv> PerRankKv(const Sequence& seq, Communicator* comm);

}  // namespace chai

#endif  // CHAI_RUNTIME_CHAI_MEMBERSHIP_REPORT_H_
