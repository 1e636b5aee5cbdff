// Device-resident block tables and score-head maps, one row per live sequence.
//
// Rebuilding and uploading every (layer, sequence, side, KV head) table each step costs more
// than the step itself at large batches (67 MB at batch 32 x 2k positions for LLaMA-7B). Here
// each sequence owns a row for its lifetime; entries change only when it gains a block, drops
// a K head (CHAI) or fixes its membership, and those few entries reach the device in one small
// scatter before the next step. A step then names its sequences' rows and nothing more.
#ifndef CHAI_RUNTIME_BLOCK_TABLES_H_
#define CHAI_RUNTIME_BLOCK_TABLES_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/host_upload.h"
#include "kernels/tensor.h"

namespace chai {

class BlockTables {
 public:
  // `cap_blocks`: the most blocks a sequence can hold per (layer, side, head).
  BlockTables(int max_rows, int layers, int kv_heads, int heads, int cap_blocks, Device device);

  int max_rows() const { return max_rows_; }
  int cap_blocks() const { return cap_; }

  // A row for a new sequence, its score-head maps reset to identity (dense).
  absl::StatusOr<int> AcquireRow();
  void ReleaseRow(int row);

  void SetBlock(int row, int layer, int side, int head, int index, int32_t block);
  // Marks every block of one (layer, side, head) absent (CHAI drops a K head).
  void ClearHead(int row, int layer, int side, int head);
  void SetScoreHeads(int row, int layer, const std::vector<int>& map);

  // Sends pending entries to the device (nothing to do on the CPU, where the tables are the
  // host copy itself), with a copy that waits for the device.
  void Flush();
  // The same without waiting: the entries go through half `parity` of page-locked staging and the
  // scatter follows in stream order (a pipelined decode step, enqueued while the previous one
  // runs). HostUpload's rule holds: a half is refilled only after the copy made from it has run.
  void FlushAsync(int parity);

  // Views for one layer: tables [max_rows, 2, kv_heads, cap], score heads [max_rows, heads].
  Tensor LayerTables(int layer) const { return tables_.Rows(layer, layer + 1).Reshape({max_rows_, 2, kv_heads_, cap_}); }
  Tensor LayerScoreHeads(int layer) const { return score_heads_.Rows(layer, layer + 1).Reshape({max_rows_, heads_}); }

 private:
  void Put(Tensor* device, std::vector<int32_t>* host, int64_t index, int32_t value);
  // Pending indices and values of both tables in one host array; clears the pending lists.
  Tensor TakePending(int64_t* table_entries, int64_t* head_entries);
  void Scatter(const Tensor& sent, int64_t table_entries, int64_t head_entries);

  int max_rows_, layers_, kv_heads_, heads_, cap_;
  Device device_;
  Tensor tables_, score_heads_;                        // [layers, ...] on the device
  std::vector<int32_t> host_tables_, host_score_heads_;  // mirrors (CUDA only)
  std::vector<int32_t> pending_table_idx_, pending_head_idx_;  // entries changed since the last Flush
  std::vector<int> free_rows_;
  HostUpload staging_;  // FlushAsync's
};

// The values a flush sends for the pending entries `idx` of a table whose host mirror is `host`:
// each entry's current host value. One scatter applies its writes in no set order, and an entry
// may be listed twice since the last flush (a row's K head cleared, then the row's next owner
// taking a block there): with the final value in every copy, any order leaves the device equal
// to the mirror. (Sending each write's own value once let a stale -1 win.)
std::vector<int32_t> PendingValues(const std::vector<int32_t>& host, const std::vector<int32_t>& idx);

}  // namespace chai

#endif  // CHAI_RUNTIME_BLOCK_TABLES_H_
