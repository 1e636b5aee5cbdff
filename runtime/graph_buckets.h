// Context-length buckets for recorded decode graphs.
//
// A recorded decode step launches its attention with a fixed bound on the sequence length, and
// the decode kernels size their chunks from that bound (nothing is read back from the device).
// With one graph per batch size and the tables' capacity as the bound (4096 positions for a
// LLaMA-7B run), a batch of 513-position sequences ran its attention in chunks planned for 4096:
// a few long, serial CTAs per (sequence, head) instead of a full wave of short ones (on H100s,
// batch-8 TPOT fell from 10.1 to 8.9 ms with buckets and a faster PagedAppend, 7.9 ms with the
// per-sequence chunks of the decode kernels and a faster argmax). Graphs are therefore recorded
// per (batch size, length bucket), where the bucket is
// the smallest of 128, 192, 256, 384, 512, 768, ... (powers of two and 1.5x powers of two) that
// holds the batch's longest sequence, capped at the capacity: the bound is then within 1.5x of
// the real length, and a decode run crosses a bucket only every ~third of its length.
#ifndef CHAI_RUNTIME_GRAPH_BUCKETS_H_
#define CHAI_RUNTIME_GRAPH_BUCKETS_H_

#include <algorithm>
#include <cstdint>

namespace chai {

inline int64_t DecodeLengthBucket(int64_t max_len, int64_t capacity) {
  int64_t bucket = 128;
  while (bucket < max_len && bucket < capacity) {
    // 128 -> 192 -> 256 -> 384 -> 512: alternately x1.5 and x4/3.
    bucket = (bucket & (bucket - 1)) == 0 ? bucket + bucket / 2 : bucket / 3 * 4;
  }
  return std::min(bucket, capacity);
}

}  // namespace chai

#endif  // CHAI_RUNTIME_GRAPH_BUCKETS_H_
