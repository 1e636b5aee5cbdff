#include "runtime/kv_cache.h"

#include <algorithm>

namespace chai {

SequenceKvCache::SequenceKvCache(int layers, int kv_heads, int head_dim, DType dtype, Device device)
    : head_dim_(head_dim), dtype_(dtype), device_(device) {
  k_.assign(layers, std::vector<Tensor>(kv_heads));
  v_.assign(layers, std::vector<Tensor>(kv_heads));
  capacity_ = 0;
  // Buffers are made on the first Reserve; mark every head as present until then.
  for (auto* side : {&k_, &v_})
    for (auto& layer : *side)
      for (auto& head : layer) head = Tensor::Empty({0, head_dim_}, dtype_, device_);
}

void SequenceKvCache::Reserve(int64_t new_length) {
  if (new_length <= capacity_) return;
  const int64_t capacity = std::max<int64_t>({new_length, 2 * capacity_, 16});
  for (auto* side : {&k_, &v_}) {
    for (auto& layer : *side) {
      for (auto& head : layer) {
        if (!head.defined()) continue;  // dropped K stays dropped
        Tensor grown = Tensor::Empty({capacity, head_dim_}, dtype_, device_);
        if (length_ > 0) {
          Tensor dst = grown.Rows(0, length_);
          CopyTensor(head.Rows(0, length_), &dst);
        }
        head = grown;
      }
    }
  }
  capacity_ = capacity;
}

static int64_t StoredBytes(const std::vector<std::vector<Tensor>>& side, int head_dim, DType dtype) {
  int64_t heads = 0;
  for (const auto& layer : side)
    for (const auto& head : layer) heads += head.defined() ? 1 : 0;
  return heads * head_dim * static_cast<int64_t>(DTypeSize(dtype));
}

int64_t SequenceKvCache::KBytesPerToken() const { return StoredBytes(k_, head_dim_, dtype_); }
int64_t SequenceKvCache::VBytesPerToken() const { return StoredBytes(v_, head_dim_, dtype_); }

}  // namespace chai
