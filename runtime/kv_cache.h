// Per-sequence key/value storage: one [capacity, head_dim] buffer per layer and KV head.
//
// Heads are separate buffers so that CHAI can drop the K of non-representative heads outright
// (the memory is released, not just left unread). Capacity grows by doubling.
#ifndef CHAI_RUNTIME_KV_CACHE_H_
#define CHAI_RUNTIME_KV_CACHE_H_

#include <cstdint>
#include <vector>

#include "kernels/tensor.h"

namespace chai {

class SequenceKvCache {
 public:
  SequenceKvCache(int layers, int kv_heads, int head_dim, DType dtype, Device device);

  int64_t length() const { return length_; }
  // Ensures room for `new_length` positions in every stored head.
  void Reserve(int64_t new_length);
  // Records that `n` more positions were written (after every layer appended them).
  void Advance(int64_t n) { length_ += n; }

  std::vector<Tensor>& k(int layer) { return k_[layer]; }
  std::vector<Tensor>& v(int layer) { return v_[layer]; }
  // Frees the K buffer of one KV head (CHAI non-representatives); later appends skip it.
  void DropK(int layer, int kv_head) { k_[layer][kv_head] = Tensor(); }
  bool HasK(int layer, int kv_head) const { return k_[layer][kv_head].defined(); }

  // Bytes stored per token position over all layers (what CHAI's savings are measured in).
  int64_t KBytesPerToken() const;
  int64_t VBytesPerToken() const;

 private:
  int head_dim_;
  DType dtype_;
  Device device_;
  int64_t length_ = 0;
  int64_t capacity_ = 0;
  std::vector<std::vector<Tensor>> k_, v_;  // [layer][kv head]
};

}  // namespace chai

#endif  // CHAI_RUNTIME_KV_CACHE_H_
