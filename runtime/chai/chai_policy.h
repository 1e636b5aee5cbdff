// CHAI's online phase inside the engine: per sequence and layer, cluster the local heads by
// their attention over the first 5 tokens, point every head at its representative's scores,
// and drop the K of heads no representative needs.
//
// Timing (DESIGN.md "Exact semantics"): membership is fixed in the forward pass in which the
// sequence first holds >= 5 tokens, before that pass's attention; queries of that pass and of
// every later pass use it. Positions computed earlier (prompts shorter than 5) stayed dense.
// The queries of the first positions are kept per layer until then, since a short prompt's
// early queries are gone by the time the 5th token arrives.
//
// Two paths compute the same membership (ClusterPath): host code reading the keys back per layer
// (ClusterLayer), or the ChaiCluster op on the engine's device (DeviceClustering), whose results
// the host applies at the end of the step (AfterStep).
#ifndef CHAI_RUNTIME_CHAI_CHAI_POLICY_H_
#define CHAI_RUNTIME_CHAI_CHAI_POLICY_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "runtime/chai/clustering.h"
#include "runtime/chai/device_clustering.h"
#include "runtime/chai/features.h"  // kChaiFeatureTokens
#include "runtime/engine.h"

namespace chai {

// Where membership is computed. kAuto: by the ChaiCluster op on CUDA engines when the method is
// the default (agglomerative, lowest) and a rank holds at most 128 heads, by host code otherwise.
// kOp: by the op on any device under the same conditions (tests run it on the CPU). kHost: always
// by host code.
enum class ClusterPath { kAuto, kHost, kOp };

struct ChaiOptions {
  // Clusters this rank forms per layer (its share of the schedule); == local heads: dense.
  std::vector<int> local_clusters;
  ClusterMethod method = ClusterMethod::kAgglomerative;
  RepMethod rep = RepMethod::kLowest;
  uint64_t seed = 0;  // k-means only
  ClusterPath path = ClusterPath::kAuto;
};

class ChaiPolicy : public AttentionPolicy {
 public:
  // `global_heads[l][i]`: the original head index of local head i in layer l (so that the
  // representative is the lowest original index, as in the single-process reference).
  ChaiPolicy(ChaiOptions options, std::vector<std::vector<int>> global_heads, int local_kv_heads, int head_dim);

  // Marks a sequence to be clustered; sequences not enabled stay dense (batches may mix them).
  void Enable(Sequence* seq) const;

  void BeforeAttention(Sequence* seq, int layer, const Tensor& q, const Tensor& k, int64_t past_len) override;
  void BeforeLayerAttention(int layer, const PagedKv& kv, const Tensor& score_heads) override;
  void AfterStep(Sequence* seq) override;
  bool Active(const Sequence& seq) const override { return seq.chai_enabled && !seq.membership_fixed; }
  // Local heads over the layer's local clusters, rounded up (1 for a dense layer).
  int MembersPerRep(int layer) const override;

 private:
  bool UseOp(Device device) const;
  // The op path's BeforeAttention: keeps early queries on the device, or queues the problem.
  void QueueForOp(Sequence* seq, int layer, const Tensor& q, int64_t past_len);
  std::vector<int> ClusterLayer(Sequence* seq, int layer) const;
  // Points the layer's heads at their representatives and drops the K no representative reads.
  void FixLayer(Sequence* seq, int layer, std::vector<int> rep) const;

  ChaiOptions options_;
  std::vector<std::vector<int>> global_heads_;
  int local_kv_heads_;
  int head_dim_;
  std::unique_ptr<DeviceClustering> device_;
};

}  // namespace chai

#endif  // CHAI_RUNTIME_CHAI_CHAI_POLICY_H_
