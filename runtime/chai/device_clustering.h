// CHAI membership computed on the engine's device by the ChaiCluster op (kernels/ops.h), with no
// host round trip inside the layer loop.
//
// In the pass where a sequence reaches 5 tokens, ChaiPolicy queues one problem per clustered
// layer (Add); the engine's per-layer hook launches the op for that layer's problems (Launch),
// which writes the representatives straight into the device score-head maps that the layer's
// attention reads next in the same stream, and enqueues an asynchronous copy of the layer's maps
// into page-locked host memory. After the step's own synchronisation (the logits readback), the
// policy takes each sequence's representatives (Take) to set seq->score_head and return the K
// blocks no representative reads. Returning them only then is safe: no kernel of the step is
// still running, and every later step reads K only through the representatives.
#ifndef CHAI_RUNTIME_CHAI_DEVICE_CLUSTERING_H_
#define CHAI_RUNTIME_CHAI_DEVICE_CLUSTERING_H_

#include <cstdint>
#include <utility>
#include <vector>

#include "kernels/host_readback.h"
#include "kernels/ops.h"
#include "runtime/sequence.h"

namespace chai {

class DeviceClustering {
 public:
  // global_heads[l][i]: the original index of local head i in layer l (the representative is the
  // member with the lowest one).
  explicit DeviceClustering(std::vector<std::vector<int>> global_heads);

  // Queues `seq` at `layer` for the next Launch(layer): queries of positions 0..saved-1 in
  // `saved_q` (undefined when none), of the others in the first rows of `new_q`.
  void Add(const Sequence* seq, int layer, Tensor saved_q, Tensor new_q, int clusters);
  // Runs the op for the problems queued at `layer` and starts copying their maps to the host.
  void Launch(int layer, const PagedKv& kv, const Tensor& score_heads);
  // (layer, representative of each local head) for every layer clustered for `seq` since the
  // last Take, waiting for the copies if they are still in flight.
  std::vector<std::pair<int, std::vector<int>>> Take(const Sequence* seq);

 private:
  struct Launched {
    const Sequence* seq;
    int layer;
    int row;
  };

  std::vector<std::vector<int>> global_heads_;
  Tensor order_;  // int32 [layers, heads]: global_heads_ on the engine's device
  int queued_layer_ = -1;
  std::vector<ops::ChaiClusterProblem> queued_;
  std::vector<const Sequence*> queued_seqs_;
  std::vector<Launched> launched_;  // results not taken yet
  HostReadback readback_;           // int32 [layers, rows, heads]: every launched layer's maps
  int64_t rows_ = 0;
};

}  // namespace chai

#endif  // CHAI_RUNTIME_CHAI_DEVICE_CLUSTERING_H_
