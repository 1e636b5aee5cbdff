#include "runtime/kv_cache.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace chai {

KvBlockPool::KvBlockPool(int64_t num_blocks, int block_size, int head_dim, DType dtype, Device device)
    : storage_(Tensor::Empty({num_blocks, block_size, head_dim}, dtype, device)),
      block_size_(block_size),
      head_dim_(head_dim) {
  free_.resize(num_blocks);
  // Lowest ids on top of the stack: fresh allocations come out in increasing order.
  for (int64_t i = 0; i < num_blocks; ++i) free_[i] = static_cast<int32_t>(num_blocks - 1 - i);
}

absl::Status KvBlockPool::Allocate(int64_t count, std::vector<int32_t>* out) {
  if (count > free_blocks()) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "KV cache is full: needs ", count, " more blocks of ", block_bytes(), " bytes, ", free_blocks(), " of ",
        num_blocks(), " are free (raise --kv-cache-gb, or shorten or batch fewer requests)"));
  }
  for (int64_t i = 0; i < count; ++i) {
    out->push_back(free_.back());
    free_.pop_back();
  }
  return absl::OkStatus();
}

void KvBlockPool::Free(const std::vector<int32_t>& blocks) {
  for (auto it = blocks.rbegin(); it != blocks.rend(); ++it) free_.push_back(*it);
}

int64_t BlocksForSequence(int64_t length, int layers, int kv_heads, int block_size) {
  return (length + block_size - 1) / block_size * layers * kv_heads * 2;
}

SequenceKvCache::SequenceKvCache(KvBlockPool* pool, BlockTables* tables, int row, int layers, int kv_heads)
    : pool_(pool), tables_(tables), row_(row), layers_(layers), kv_heads_(kv_heads), blocks_(static_cast<size_t>(layers) * 2 * kv_heads),
      dropped_k_(static_cast<size_t>(layers) * kv_heads, false) {}

SequenceKvCache::~SequenceKvCache() {
  for (const auto& b : blocks_) pool_->Free(b);
  // Stale entries of the row are harmless: kernels read only positions below a sequence's
  // length, the next owner overwrites them as it grows, and a dropped head is cleared whole.
  tables_->ReleaseRow(row_);
}

// Every list that is not a dropped K head holds the same number of blocks (Reserve grows them
// together; DropK empties a list for good), so what a length needs is one product, not a walk
// over layers x sides x heads (2048 lists for LLaMA-7B, twice per sequence per step).
int64_t SequenceKvCache::BlocksNeededFor(int64_t new_length) const {
  const int64_t per_head = (new_length + pool_->block_size() - 1) / pool_->block_size();
  const int64_t live_lists = static_cast<int64_t>(blocks_.size()) - dropped_count_;
  return live_lists * std::max<int64_t>(0, per_head - held_per_list_);
}

absl::Status SequenceKvCache::Reserve(int64_t new_length) {
  if ((new_length + pool_->block_size() - 1) / pool_->block_size() > tables_->cap_blocks()) {
    return absl::OutOfRangeError(absl::StrCat("sequence length ", new_length, " exceeds the block tables' capacity of ",
                                              int64_t{tables_->cap_blocks()} * pool_->block_size(), " positions"));
  }
  const int64_t needed = BlocksNeededFor(new_length);
  if (needed == 0) return absl::OkStatus();
  std::vector<int32_t> fresh;
  if (auto s = pool_->Allocate(needed, &fresh); !s.ok()) return s;
  const int64_t per_head = (new_length + pool_->block_size() - 1) / pool_->block_size();
  size_t next = 0;
  for (int l = 0; l < layers_; ++l)
    for (int side = 0; side < 2; ++side)
      for (int h = 0; h < kv_heads_; ++h) {
        if (side == kKey && dropped_k_[l * kv_heads_ + h]) continue;
        auto& list = blocks_[Index(l, Side(side), h)];
        while (static_cast<int64_t>(list.size()) < per_head) {
          tables_->SetBlock(row_, l, side, h, static_cast<int>(list.size()), fresh[next]);
          list.push_back(fresh[next++]);
        }
      }
  held_per_list_ = per_head;
  return absl::OkStatus();
}

void SequenceKvCache::DropK(int layer, int kv_head) {
  auto& list = blocks_[Index(layer, kKey, kv_head)];
  pool_->Free(list);
  list.clear();
  if (!dropped_k_[layer * kv_heads_ + kv_head]) ++dropped_count_;
  dropped_k_[layer * kv_heads_ + kv_head] = true;
  tables_->ClearHead(row_, layer, kKey, kv_head);
}

Tensor SequenceKvCache::Rows(int layer, Side side, int head, int64_t position, int64_t count) const {
  const int bs = pool_->block_size();
  const int32_t block = blocks_[Index(layer, side, head)][position / bs];
  const int64_t row = static_cast<int64_t>(block) * bs + position % bs;
  return pool_->storage().Reshape({pool_->num_blocks() * bs, pool_->head_dim()}).Rows(row, row + count);
}

int64_t SequenceKvCache::KBytesPerToken() const {
  int64_t heads = 0;
  for (bool dropped : dropped_k_) heads += dropped ? 0 : 1;
  return heads * pool_->head_dim() * static_cast<int64_t>(DTypeSize(pool_->storage().dtype()));
}

int64_t SequenceKvCache::VBytesPerToken() const {
  return int64_t{layers_} * kv_heads_ * pool_->head_dim() * static_cast<int64_t>(DTypeSize(pool_->storage().dtype()));
}

}  // namespace chai
