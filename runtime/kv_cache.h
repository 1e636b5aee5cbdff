// The paged KV cache: one pool of fixed-size blocks per engine, and per sequence the block
// ids of every (layer, side, KV head).
//
// A block holds `block_size` positions of ONE head of ONE side (K or V) of one layer. That
// granularity is what makes CHAI's savings real: dropping a non-representative's K returns its
// blocks to the pool, where they admit more sequences.
#ifndef CHAI_RUNTIME_KV_CACHE_H_
#define CHAI_RUNTIME_KV_CACHE_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "kernels/tensor.h"
#include "runtime/block_tables.h"

namespace chai {

class KvBlockPool {
 public:
  KvBlockPool(int64_t num_blocks, int block_size, int head_dim, DType dtype, Device device);

  const Tensor& storage() const { return storage_; }  // [num_blocks, block_size, head_dim]
  int block_size() const { return block_size_; }
  int head_dim() const { return head_dim_; }
  int64_t num_blocks() const { return storage_.dim(0); }
  int64_t free_blocks() const { return static_cast<int64_t>(free_.size()); }
  int64_t block_bytes() const { return static_cast<int64_t>(block_size_) * head_dim_ * DTypeSize(storage_.dtype()); }

  // Takes `count` blocks or none (an error saying the cache is full).
  absl::Status Allocate(int64_t count, std::vector<int32_t>* out);
  void Free(const std::vector<int32_t>& blocks);

 private:
  Tensor storage_;
  int block_size_;
  int head_dim_;
  std::vector<int32_t> free_;  // a stack: the most recently freed block is reused first
};

// Bytes per pool for `blocks` blocks; and the number of blocks a sequence of `length`
// positions needs (dense: every head of both sides).
int64_t BlocksForSequence(int64_t length, int layers, int kv_heads, int block_size);

class SequenceKvCache {
 public:
  enum Side { kKey = 0, kValue = 1 };

  // `row` is the sequence's row in `tables`, which mirrors every block this cache takes.
  SequenceKvCache(KvBlockPool* pool, BlockTables* tables, int row, int layers, int kv_heads);
  ~SequenceKvCache();  // returns every block to the pool and the row to the tables
  SequenceKvCache(const SequenceKvCache&) = delete;
  SequenceKvCache& operator=(const SequenceKvCache&) = delete;

  int64_t length() const { return length_; }
  int row() const { return row_; }
  int layers() const { return layers_; }
  int kv_heads() const { return kv_heads_; }
  // Ensures every stored head has blocks for `new_length` positions.
  absl::Status Reserve(int64_t new_length);
  int64_t BlocksNeededFor(int64_t new_length) const;  // more blocks Reserve would take
  void Advance(int64_t n) { length_ += n; }

  const std::vector<int32_t>& blocks(int layer, Side side, int head) const {
    return blocks_[Index(layer, side, head)];
  }
  // Frees the K blocks of one KV head (CHAI non-representatives); later appends skip it.
  void DropK(int layer, int kv_head);
  bool HasK(int layer, int kv_head) const { return !dropped_k_[layer * kv_heads_ + kv_head]; }
  // A [count, head_dim] view of positions [position, position + count), which must lie in one
  // block (for reading a few K rows on the host side in one copy).
  Tensor Rows(int layer, Side side, int head, int64_t position, int64_t count) const;

  // Bytes stored per token position over all layers (what CHAI's savings are measured in).
  int64_t KBytesPerToken() const;
  int64_t VBytesPerToken() const;

 private:
  size_t Index(int layer, Side side, int head) const {
    return (static_cast<size_t>(layer) * 2 + side) * kv_heads_ + head;
  }
  KvBlockPool* pool_;
  BlockTables* tables_;
  int row_;
  int layers_, kv_heads_;
  int64_t length_ = 0;
  std::vector<std::vector<int32_t>> blocks_;  // [layer][side][head] -> block ids
  std::vector<bool> dropped_k_;               // [layer][head]
  int64_t dropped_count_ = 0;                 // true entries of dropped_k_
  int64_t held_per_list_ = 0;                 // blocks in every list but the dropped ones
};

}  // namespace chai

#endif  // CHAI_RUNTIME_KV_CACHE_H_
