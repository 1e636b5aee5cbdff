#include "runtime/chai/device_clustering.h"

#include <cstdio>
#include <cstdlib>

namespace chai {
namespace {

[[noreturn]] void Fail(const char* what) {
  std::fprintf(stderr, "chai: internal error in CHAI device clustering: %s\n", what);
  std::abort();
}

}  // namespace

DeviceClustering::DeviceClustering(std::vector<std::vector<int>> global_heads)
    : global_heads_(std::move(global_heads)) {}

void DeviceClustering::Add(const Sequence* seq, int layer, Tensor saved_q, Tensor new_q, int clusters) {
  if (!queued_.empty() && layer != queued_layer_) Fail("problems of two layers queued at once");
  // The op reads every KV head's first K block (ChaiClusterKernel traps on a missing one, which
  // surfaces only as an unspecified launch failure): say here, on the host, if one is gone.
  for (int g = 0; g < seq->kv.kv_heads(); ++g) {
    if (!seq->kv.HasK(layer, g)) Fail("a K head was dropped before the layer was clustered");
  }
  queued_layer_ = layer;
  ops::ChaiClusterProblem p;
  p.saved_q = std::move(saved_q);
  p.new_q = std::move(new_q);
  p.table_row = p.map_row = seq->kv.row();
  p.order_row = layer;
  p.clusters = clusters;
  queued_.push_back(std::move(p));
  queued_seqs_.push_back(seq);
}

void DeviceClustering::Launch(int layer, const PagedKv& kv, const Tensor& score_heads) {
  if (queued_.empty()) return;
  if (layer != queued_layer_) Fail("launch for a layer other than the queued one");
  const int64_t layers = static_cast<int64_t>(global_heads_.size()), rows = score_heads.dim(0),
                heads = score_heads.dim(1);
  if (!order_.defined() || order_.device() != score_heads.device()) {
    std::vector<int32_t> order;
    for (const std::vector<int>& layer_heads : global_heads_) {
      if (static_cast<int64_t>(layer_heads.size()) != heads) Fail("head count differs from the maps'");
      order.insert(order.end(), layer_heads.begin(), layer_heads.end());
    }
    order_ = Tensor::FromInts(order, {layers, heads});
    if (score_heads.device() != Device::kCpu) order_ = order_.To(score_heads.device());
  }
  const size_t plane = static_cast<size_t>(rows * heads) * sizeof(int32_t);
  if (launched_.empty()) {
    readback_.Reserve(plane * layers, score_heads.device());  // allocates only the first time
    rows_ = rows;
  } else if (rows != rows_) {
    Fail("score-head maps changed shape within a step");
  }
  Tensor maps = score_heads;
  ops::ChaiCluster(queued_, kv, order_, &maps);
  readback_.CopyAsync(score_heads, plane * layer);
  for (const Sequence* seq : queued_seqs_) launched_.push_back({seq, layer, seq->kv.row()});
  queued_.clear();
  queued_seqs_.clear();
}

std::vector<std::pair<int, std::vector<int>>> DeviceClustering::Take(const Sequence* seq) {
  std::vector<std::pair<int, std::vector<int>>> out;
  std::vector<Launched> rest;
  for (const Launched& r : launched_) {
    if (r.seq != seq) {
      rest.push_back(r);
      continue;
    }
    if (out.empty()) readback_.Wait();
    const int64_t heads = static_cast<int64_t>(global_heads_[r.layer].size());
    const int32_t* map = static_cast<const int32_t*>(readback_.data()) + (r.layer * rows_ + r.row) * heads;
    out.emplace_back(r.layer, std::vector<int>(map, map + heads));
  }
  launched_ = std::move(rest);
  return out;
}

}  // namespace chai
