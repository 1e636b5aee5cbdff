#include "runtime/chai/membership_report.h"

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>

namespace chai {
namespace {

// Reports gather small host tables; the communicator may want them on the GPU (NCCL). A failed
// collective leaves the ranks out of step, so it is fatal, as in the engine.
void Collective(Communicator* comm, const char* what, const std::function<absl::Status(Communicator*)>& op) {
  if (absl::Status s = op(comm); !s.ok()) {
    std::fprintf(stderr, "chai: fatal: %s collective failed: %s\n", what, std::string(s.message()).c_str());
    std::abort();
  }
}

Tensor AllGatherColumnsFromHost(Communicator* comm, const Tensor& mine, const char* what) {
  const Device where = comm->tensor_device();
  Tensor local = mine.To(where);
  Tensor all = Tensor::Empty({mine.dim(0), mine.dim(1) * comm->size()}, mine.dtype(), where);
  Collective(comm, what, [&](Communicator* c) { return c->AllGatherColumns(local, &all); });
  return all.To(Device::kCpu);
}

}  // namespace

std::vector<std::vector<int>> GlobalRepresentatives(const Sequence& seq, const ModelWeights& weights,
                                                    const HeadPlacement& placement, Communicator* comm) {
  const int layers = static_cast<int>(weights.layers.size());
  const int local = weights.local_heads;
  // Global ids fit exactly in fp32 (heads <= 2^24), so the float all-gather is lossless.
  Tensor mine = Tensor::Empty({layers, local}, DType::kF32);
  for (int l = 0; l < layers; ++l) {
    const std::vector<int>& heads = weights.layers[l].heads;
    for (int i = 0; i < local; ++i) mine.data<float>()[l * local + i] = static_cast<float>(heads[seq.score_head[l][i]]);
  }
  const Tensor all = comm->size() > 1 ? AllGatherColumnsFromHost(comm, mine, "representatives report") : mine;
  const int total = local * comm->size();
  std::vector<std::vector<int>> reps(layers, std::vector<int>(total));
  for (int l = 0; l < layers; ++l)
    for (int slot = 0; slot < total; ++slot) {
      reps[l][placement.layer_perm[l][slot]] = static_cast<int>(all.data<float>()[l * total + slot]);
    }
  return reps;
}

KvBytes GlobalKvBytes(const Sequence& seq, const ModelConfig& config, DType dtype, Communicator* comm) {
  Tensor sums = Tensor::FromFloats({static_cast<float>(seq.kv.KBytesPerToken()),
                                    static_cast<float>(seq.kv.VBytesPerToken())}, {2});
  if (comm->size() > 1) {
    Tensor on_comm = sums.To(comm->tensor_device());
    Collective(comm, "KV bytes report", [&](Communicator* c) { return c->AllReduceSum(&on_comm); });
    sums = on_comm.To(Device::kCpu);
  }
  KvBytes b;
  b.k_per_token = static_cast<int64_t>(sums.data<float>()[0]);
  b.v_per_token = static_cast<int64_t>(sums.data<float>()[1]);
  b.dense_per_token = 2LL * config.num_layers * config.num_kv_heads * config.head_dim * DTypeSize(dtype);
  return b;
}

std::vector<RankKv> PerRankKv(const Sequence& seq, Communicator* comm) {
  int reps = 0;
  for (const auto& layer : seq.score_head)
    for (size_t h = 0; h < layer.size(); ++h) reps += layer[h] == static_cast<int>(h) ? 1 : 0;
  Tensor mine = Tensor::FromFloats({static_cast<float>(reps), static_cast<float>(seq.kv.KBytesPerToken())}, {1, 2});
  const Tensor all = comm->size() > 1 ? AllGatherColumnsFromHost(comm, mine, "per-rank KV report") : mine;
  std::vector<RankKv> out(comm->size());
  for (int r = 0; r < comm->size(); ++r) {
    out[r].representatives = static_cast<int>(all.data<float>()[2 * r]);
    out[r].k_bytes_per_token = static_cast<int64_t>(all.data<float>()[2 * r + 1]);
  }
  return out;
}

}  // namespace chai
