// Random host-side cache layouts for the tests of SplitQkvRotaryAppend (CPU and GPU): several
// sequences with their own lengths and new-row counts (decode rows, prefill rows that straddle
// blocks, an empty sequence), shuffled block ids, persistent table rows through `slots` or row s,
// and optionally CHAI-style dropped K heads (-1 in the K tables of some heads, V kept).
#ifndef CHAI_TESTS_SUPPORT_PAGED_APPEND_CASE_H_
#define CHAI_TESTS_SUPPORT_PAGED_APPEND_CASE_H_

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/paged_kv.h"
#include "kernels/tensor.h"

namespace chai::test {

struct PagedAppendCase {
  int block_size = 0, max_blocks = 0, num_blocks = 0, num_seqs = 0;
  int64_t rows = 0;                          // T, the step's new rows
  Tensor tables;                             // int32 [table_rows, 2, kv_heads, max_blocks]
  Tensor q_start, seq_lens, slots;           // int32; slots undefined without persistent rows
  Tensor positions;                          // int32 [T]: each new row's position
  Tensor token_rows;                         // int32 [T]: each new row's table row
  int max_new = 0, max_len = 0;
};

// new_tokens[s] rows of sequence s are appended, ending at length lens[s] (>= new_tokens[s]).
// drop_k: heads g with (g + s) % 3 == 1 keep no K blocks in sequence s (as CHAI's
// non-representatives), V blocks stay.
inline PagedAppendCase MakePagedAppendCase(std::mt19937& rng, int kv_heads, int block_size,
                                           const std::vector<int>& new_tokens, const std::vector<int>& lens,
                                           bool use_slots, bool drop_k) {
  PagedAppendCase c;
  c.block_size = block_size;
  c.num_seqs = static_cast<int>(lens.size());
  c.max_len = *std::max_element(lens.begin(), lens.end());
  c.max_new = *std::max_element(new_tokens.begin(), new_tokens.end());
  c.max_blocks = (c.max_len + block_size - 1) / block_size + 1;  // one spare column, left at -1
  int needed = 0;
  for (int len : lens) needed += 2 * kv_heads * ((len + block_size - 1) / block_size);
  c.num_blocks = needed + 5;  // blocks no table names stay poisoned
  std::vector<int32_t> ids(c.num_blocks);
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);

  // Persistent rows: two more than there are sequences, assigned in shuffled order.
  const int table_rows = use_slots ? c.num_seqs + 2 : c.num_seqs;
  std::vector<int32_t> slot(table_rows);
  std::iota(slot.begin(), slot.end(), 0);
  if (use_slots) std::shuffle(slot.begin(), slot.end(), rng);
  slot.resize(c.num_seqs);

  std::vector<int32_t> tables(static_cast<size_t>(table_rows) * 2 * kv_heads * c.max_blocks, -1);
  size_t next = 0;
  for (int s = 0; s < c.num_seqs; ++s) {
    for (int side = 0; side < 2; ++side) {
      for (int g = 0; g < kv_heads; ++g) {
        if (drop_k && side == 0 && (g + s) % 3 == 1) continue;
        for (int b = 0; b < (lens[s] + block_size - 1) / block_size; ++b) {
          tables[((static_cast<size_t>(slot[s]) * 2 + side) * kv_heads + g) * c.max_blocks + b] = ids[next++];
        }
      }
    }
  }
  c.tables = Tensor::FromInts(tables, {table_rows, 2, kv_heads, c.max_blocks});

  std::vector<int32_t> q_start = {0}, positions, token_rows;
  for (int s = 0; s < c.num_seqs; ++s) {
    q_start.push_back(q_start.back() + new_tokens[s]);
    for (int i = 0; i < new_tokens[s]; ++i) {
      positions.push_back(lens[s] - new_tokens[s] + i);
      token_rows.push_back(slot[s]);
    }
  }
  c.rows = q_start.back();
  c.q_start = Tensor::FromInts(q_start, {c.num_seqs + 1});
  c.seq_lens = Tensor::FromInts(std::vector<int32_t>(lens.begin(), lens.end()), {c.num_seqs});
  if (use_slots) c.slots = Tensor::FromInts(slot, {c.num_seqs});
  c.positions = Tensor::FromInts(positions, {c.rows});
  c.token_rows = Tensor::FromInts(token_rows, {c.rows});
  return c;
}

// The case's step layout on the host (token_rows included), and the same with its arrays on `device`.
inline BatchLayout HostLayout(const PagedAppendCase& c) {
  BatchLayout b;
  b.q_start = c.q_start;
  b.seq_lens = c.seq_lens;
  b.slots = c.slots;
  b.token_rows = c.token_rows;
  b.num_seqs = c.num_seqs;
  b.max_new_tokens = c.max_new;
  b.max_seq_len = c.max_len;
  return b;
}

inline BatchLayout LayoutOn(const PagedAppendCase& c, Device device) {
  BatchLayout b = HostLayout(c);
  for (Tensor* t : {&b.q_start, &b.seq_lens, &b.slots, &b.token_rows}) {
    if (t->defined()) *t = t->To(device);
  }
  return b;
}

// The step layouts the tests run: decode rows of several lengths, prefill rows, a mix with an
// empty sequence, and one long sequence. Each is {new_tokens, lens}.
struct StepShape {
  std::vector<int> new_tokens, lens;
};
inline std::vector<StepShape> PagedAppendShapes() {
  return {
      {{1}, {1}},                      // the first decode position
      {{1, 1, 1}, {7, 20, 33}},        // a decode batch
      {{5, 3}, {5, 11}},               // prefill, one chunk continuing a sequence
      {{3, 0, 1, 6}, {3, 4, 17, 21}},  // mixed, with an empty sequence
      {{37}, {40}},                    // a long chunk straddling several blocks
  };
}

}  // namespace chai::test

#endif  // CHAI_TESTS_SUPPORT_PAGED_APPEND_CASE_H_
