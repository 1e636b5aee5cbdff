#include "runtime/chai/chai_policy.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>

#include "runtime/chai/features.h"

namespace chai {

ChaiPolicy::ChaiPolicy(ChaiOptions options, std::vector<std::vector<int>> global_heads, int local_kv_heads,
                       int head_dim)
    : options_(std::move(options)),
      global_heads_(std::move(global_heads)),
      local_kv_heads_(local_kv_heads),
      head_dim_(head_dim),
      device_(std::make_unique<DeviceClustering>(global_heads_)) {}

void ChaiPolicy::Enable(Sequence* seq) const {
  seq->chai_enabled = true;
  seq->membership_fixed = false;
  const int layers = static_cast<int>(global_heads_.size());
  const int64_t width = static_cast<int64_t>(global_heads_[0].size()) * head_dim_;
  seq->early_queries.assign(layers, Tensor());
  for (int l = 0; l < layers; ++l) {
    if (options_.local_clusters[l] < static_cast<int>(global_heads_[l].size())) {
      seq->early_queries[l] = Tensor::Empty({kChaiFeatureTokens, width}, DType::kF32);
    }
  }
}

int ChaiPolicy::MembersPerRep(int layer) const {
  if (layer < 0 || layer >= static_cast<int>(global_heads_.size()) ||
      layer >= static_cast<int>(options_.local_clusters.size()) || options_.local_clusters[layer] <= 0) {
    return 1;
  }
  const int heads = static_cast<int>(global_heads_[layer].size()), k = options_.local_clusters[layer];
  return (heads + k - 1) / k;
}

std::vector<int> ChaiPolicy::ClusterLayer(Sequence* seq, int layer) const {
  const int heads = static_cast<int>(global_heads_[layer].size());
  // Keys of the first 5 positions, [5][kv heads * d], from the cache (host fp32).
  const int64_t kv_width = static_cast<int64_t>(local_kv_heads_) * head_dim_;
  std::vector<float> keys(kChaiFeatureTokens * kv_width);
  for (int g = 0; g < local_kv_heads_; ++g) {
    // One copy per KV head: the first positions share its first block (blocks hold >= 5).
    const std::vector<float> rows = seq->kv.Rows(layer, SequenceKvCache::kKey, g, 0, kChaiFeatureTokens).ToFloats();
    for (int t = 0; t < kChaiFeatureTokens; ++t) {
      std::copy_n(rows.data() + t * head_dim_, head_dim_, keys.data() + t * kv_width + g * head_dim_);
    }
  }
  const std::vector<float> queries = seq->early_queries[layer].ToFloats();
  const std::vector<float> features =
      AttentionFeatures(queries.data(), keys.data(), heads, local_kv_heads_, head_dim_,
                        heads * head_dim_, static_cast<int>(kv_width));
  const int f = kChaiFeatureTokens * kChaiFeatureTokens;
  std::vector<int> rep = ClusterHeads(features.data(), heads, f, options_.local_clusters[layer], options_.method,
                                      options_.rep, options_.seed);
  if (options_.rep == RepMethod::kLowest) {
    // Local order may differ from original head order under a head placement: the
    // representative is the member with the lowest original index.
    std::map<int, int> lowest;  // cluster (by its local rep) -> local head with lowest global index
    for (int h = 0; h < heads; ++h) {
      auto [it, inserted] = lowest.emplace(rep[h], h);
      if (!inserted && global_heads_[layer][h] < global_heads_[layer][it->second]) it->second = h;
    }
    for (int h = 0; h < heads; ++h) rep[h] = lowest[rep[h]];
  }
  return rep;
}

bool ChaiPolicy::UseOp(Device device) const {
  const bool published = options_.method == ClusterMethod::kAgglomerative && options_.rep == RepMethod::kLowest &&
                         static_cast<int>(global_heads_[0].size()) <= ops::kChaiClusterMaxHeads;
  switch (options_.path) {
    case ClusterPath::kHost:
      return false;
    case ClusterPath::kOp:
      return published;
    case ClusterPath::kAuto:
      break;
  }
  return published && device == Device::kCuda;
}

void ChaiPolicy::FixLayer(Sequence* seq, int layer, std::vector<int> rep) const {
  seq->score_head[layer] = std::move(rep);
  // K is kept only for the KV heads that some representative reads.
  const int group = static_cast<int>(seq->score_head[layer].size()) / local_kv_heads_;
  std::vector<bool> needed(local_kv_heads_, false);
  for (int r : seq->score_head[layer]) needed[r / group] = true;
  for (int g = 0; g < local_kv_heads_; ++g)
    if (!needed[g]) seq->kv.DropK(layer, g);
}

void ChaiPolicy::QueueForOp(Sequence* seq, int layer, const Tensor& q, int64_t past_len) {
  Tensor& early = seq->early_queries[layer];
  const int64_t n = q.dim(0);
  if (past_len + n < kChaiFeatureTokens) {
    // Not 5 tokens yet: keep this pass's queries, on the device in the run dtype.
    if (early.device() != q.device() || early.dtype() != q.dtype()) {
      if (past_len > 0) {
        std::fprintf(stderr, "chai: internal error: CHAI early queries kept on another device\n");
        std::abort();
      }
      early = Tensor::Empty({kChaiFeatureTokens, q.dim(1)}, q.dtype(), q.device());
    }
    Tensor dst = early.Rows(past_len, past_len + n);
    CopyTensor(q, &dst);
    return;
  }
  device_->Add(seq, layer, past_len > 0 ? early.Rows(0, past_len) : Tensor(), q.Rows(0, kChaiFeatureTokens - past_len),
               options_.local_clusters[layer]);
}

void ChaiPolicy::BeforeAttention(Sequence* seq, int layer, const Tensor& q, const Tensor&, int64_t past_len) {
  if (!seq->chai_enabled || seq->membership_fixed || !seq->early_queries[layer].defined()) return;
  if (UseOp(q.device())) {
    QueueForOp(seq, layer, q, past_len);
    return;
  }
  // Keep this pass's queries among the first 5 positions.
  const int64_t n = q.dim(0);
  const int64_t keep = std::min<int64_t>(n, kChaiFeatureTokens - past_len);
  if (keep > 0) {
    Tensor dst = seq->early_queries[layer].Rows(past_len, past_len + keep);
    Tensor rows = q.Rows(0, keep);
    if (rows.dtype() != DType::kF32) rows = rows.Cast(DType::kF32);
    CopyTensor(rows, &dst);
  }
  if (past_len + n < kChaiFeatureTokens) return;  // not 5 tokens yet: this pass stays dense

  FixLayer(seq, layer, ClusterLayer(seq, layer));
}

void ChaiPolicy::BeforeLayerAttention(int layer, const PagedKv& kv, const Tensor& score_heads) {
  device_->Launch(layer, kv, score_heads);
}

void ChaiPolicy::AfterStep(Sequence* seq) {
  // The op's representatives, computed in this step (the engine has waited for its device work).
  for (auto& [layer, rep] : device_->Take(seq)) FixLayer(seq, layer, std::move(rep));
  if (!seq->chai_enabled || seq->membership_fixed || seq->length() < kChaiFeatureTokens) return;
  seq->membership_fixed = true;
  seq->early_queries.clear();  // no longer needed
}

}  // namespace chai
