#include "runtime/block_tables.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "kernels/ops.h"

namespace chai {

BlockTables::BlockTables(int max_rows, int layers, int kv_heads, int heads, int cap_blocks, Device device)
    : max_rows_(max_rows), layers_(layers), kv_heads_(kv_heads), heads_(heads), cap_(cap_blocks), device_(device) {
  const int64_t per_layer_tables = int64_t{max_rows} * 2 * kv_heads * cap_blocks;
  tables_ = Tensor::Empty({layers, per_layer_tables}, DType::kI32, device);
  // Zeros on the device too: the host mirror starts at zero and only differences are sent.
  score_heads_ = Tensor::Zeros({layers, int64_t{max_rows} * heads}, DType::kI32, device);
  // Fresh tables say "no block" everywhere; rows are reset to identity maps when acquired.
  Tensor minus_one = Tensor::Empty(tables_.shape(), DType::kI32);
  std::fill(minus_one.data<int32_t>(), minus_one.data<int32_t>() + minus_one.numel(), -1);
  if (device == Device::kCpu) {
    tables_ = minus_one;
  } else {
    CopyTensor(minus_one, &tables_);
    host_tables_.assign(minus_one.data<int32_t>(), minus_one.data<int32_t>() + minus_one.numel());
    host_score_heads_.assign(score_heads_.numel(), 0);
  }
  // The highest row is handed out first, so that a sequence's row differs from its place in a
  // batch even in small runs (kernels must index tables by row; tests then catch it).
  for (int r = 0; r < max_rows; ++r) free_rows_.push_back(r);
}

absl::StatusOr<int> BlockTables::AcquireRow() {
  if (free_rows_.empty()) {
    return absl::ResourceExhaustedError(
        absl::StrCat("too many sequences at once: the engine holds at most ", max_rows_,
                     " (the batch it was loaded for, or what its KV cache holds at one block each: raise "
                     "--kv-cache-gb, or batch fewer requests)"));
  }
  const int row = free_rows_.back();
  free_rows_.pop_back();
  for (int l = 0; l < layers_; ++l) {
    std::vector<int> identity(heads_);
    for (int h = 0; h < heads_; ++h) identity[h] = h;
    SetScoreHeads(row, l, identity);
  }
  return row;
}

void BlockTables::ReleaseRow(int row) { free_rows_.push_back(row); }

void BlockTables::Put(Tensor* device, std::vector<int32_t>* host, int64_t index, int32_t value) {
  if (device_ == Device::kCpu) {
    device->data<int32_t>()[index] = value;
    return;
  }
  if ((*host)[index] == value) return;
  (*host)[index] = value;
  const bool tables = device == &tables_;
  (tables ? pending_table_idx_ : pending_head_idx_).push_back(static_cast<int32_t>(index));
}

void BlockTables::SetBlock(int row, int layer, int side, int head, int index, int32_t block) {
  const int64_t at = int64_t{layer} * max_rows_ * 2 * kv_heads_ * cap_ +
                     ((int64_t{row} * 2 + side) * kv_heads_ + head) * cap_ + index;
  Put(&tables_, &host_tables_, at, block);
}

void BlockTables::ClearHead(int row, int layer, int side, int head) {
  for (int b = 0; b < cap_; ++b) SetBlock(row, layer, side, head, b, -1);
}

void BlockTables::SetScoreHeads(int row, int layer, const std::vector<int>& map) {
  const int64_t base = int64_t{layer} * max_rows_ * heads_ + int64_t{row} * heads_;
  for (int h = 0; h < heads_; ++h) Put(&score_heads_, &host_score_heads_, base + h, map[h]);
}

std::vector<int32_t> PendingValues(const std::vector<int32_t>& host, const std::vector<int32_t>& idx) {
  std::vector<int32_t> values(idx.size());
  for (size_t i = 0; i < idx.size(); ++i) values[i] = host[static_cast<size_t>(idx[i])];
  return values;
}

Tensor BlockTables::TakePending(int64_t* table_entries, int64_t* head_entries) {
  *table_entries = static_cast<int64_t>(pending_table_idx_.size());
  *head_entries = static_cast<int64_t>(pending_head_idx_.size());
  std::vector<int32_t> all;
  all.reserve(pending_table_idx_.size() * 2 + pending_head_idx_.size() * 2);
  for (const auto& [idx, host] : {std::pair{&pending_table_idx_, &host_tables_},
                                  std::pair{&pending_head_idx_, &host_score_heads_}}) {
    const std::vector<int32_t> values = PendingValues(*host, *idx);
    all.insert(all.end(), idx->begin(), idx->end());
    all.insert(all.end(), values.begin(), values.end());
    idx->clear();
  }
  return Tensor::FromInts(all, {static_cast<int64_t>(all.size())});
}

// `sent` on the device: the tables' indices, their values, then the maps' indices and values.
void BlockTables::Scatter(const Tensor& sent, int64_t nt, int64_t nh) {
  if (nt > 0) {
    Tensor flat = tables_.Reshape({tables_.numel()});
    ops::ScatterInt32(sent.Rows(0, nt), sent.Rows(nt, 2 * nt), &flat);
  }
  if (nh > 0) {
    Tensor flat = score_heads_.Reshape({score_heads_.numel()});
    ops::ScatterInt32(sent.Rows(2 * nt, 2 * nt + nh), sent.Rows(2 * nt + nh, 2 * (nt + nh)), &flat);
  }
}

void BlockTables::Flush() {
  if (pending_table_idx_.empty() && pending_head_idx_.empty()) return;
  // Entries and values of both tables travel in one copy (each such copy waits for the device),
  // then one scatter per table reads its part.
  int64_t nt = 0, nh = 0;
  const Tensor host = TakePending(&nt, &nh);
  Scatter(host.To(device_), nt, nh);
}

void BlockTables::FlushAsync(int parity) {
  if (pending_table_idx_.empty() && pending_head_idx_.empty()) return;
  int64_t nt = 0, nh = 0;
  const Tensor host = TakePending(&nt, &nh);
  // Stream-ordered device memory (device_memory.cc): freed after the scatters that read it.
  Tensor sent = Tensor::Empty(host.shape(), DType::kI32, device_);
  staging_.CopyAsync(host, &sent, parity);
  Scatter(sent, nt, nh);
}

}  // namespace chai
