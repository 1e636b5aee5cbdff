// One request's state inside the engine: its tokens, its KV cache and, per layer, which head's
// attention scores each local head uses (identity = dense; CHAI points members at their
// representative once membership is fixed).
#ifndef CHAI_RUNTIME_SEQUENCE_H_
#define CHAI_RUNTIME_SEQUENCE_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "kernels/tensor.h"
#include "runtime/kv_cache.h"

namespace chai {

struct Sequence {
  Sequence(KvBlockPool* pool, BlockTables* tables, int row, int layers, int local_heads, int local_kv_heads)
      : kv(pool, tables, row, layers, local_kv_heads),
        score_head(layers, std::vector<int>(local_heads)) {
    for (auto& layer : score_head)
      for (int h = 0; h < local_heads; ++h) layer[h] = h;
  }

  int64_t length() const { return kv.length(); }

  SequenceKvCache kv;
  std::vector<std::vector<int>> score_head;  // [layer][local head] -> local score head
  // CHAI bookkeeping (owned by runtime/chai): the queries of the first positions per layer,
  // kept until membership is fixed, and whether it is.
  std::vector<Tensor> early_queries;
  bool chai_enabled = false;
  bool membership_fixed = false;
};

}  // namespace chai

#endif  // CHAI_RUNTIME_SEQUENCE_H_
