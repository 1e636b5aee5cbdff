// Paged KV cache ops on the CPU: scatter the step's K/V rows into their blocks, and causal
// attention over the blocks with CHAI's shared scores (probabilities computed once per
// representative, applied to each member's own V). The reference the CUDA kernels match.
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/parallel_for.h"

namespace chai::cpu {
namespace {

// Position `pos` of (sequence s, side, head g) in the pool, or nullptr without a block.
struct CacheIndex {
  const PagedKv& kv;
  const BatchLayout& batch;
  float* pool;
  int64_t d;
  int64_t Row(int s) const { return batch.slots.defined() ? batch.slots.data<int32_t>()[s] : s; }
  float* At(int s, int side, int g, int64_t pos) const {
    const int32_t* table = kv.tables.data<int32_t>() + ((Row(s) * 2 + side) * kv.kv_heads + g) * kv.max_blocks;
    const int32_t block = table[pos / kv.block_size];
    if (block < 0) return nullptr;
    return pool + (int64_t(block) * kv.block_size + pos % kv.block_size) * d;
  }
};

}  // namespace

void PagedAppend(const Tensor& k, const Tensor& v, const PagedKv& kv, const BatchLayout& batch) {
  const int64_t d = kv.pool.dim(2), width = int64_t{kv.kv_heads} * d;
  const CacheIndex index{kv, batch, kv.pool.data<float>(), d};
  const int32_t* q_start = batch.q_start.data<int32_t>();
  const int32_t* lens = batch.seq_lens.data<int32_t>();
  for (int s = 0; s < batch.num_seqs; ++s) {
    const int64_t n = q_start[s + 1] - q_start[s];
    for (int64_t i = 0; i < n; ++i) {
      const int64_t row = q_start[s] + i, pos = lens[s] - n + i;
      for (int g = 0; g < kv.kv_heads; ++g) {
        if (float* dst = index.At(s, 0, g, pos)) std::memcpy(dst, k.data<float>() + row * width + g * d, d * 4);
        if (float* dst = index.At(s, 1, g, pos)) std::memcpy(dst, v.data<float>() + row * width + g * d, d * 4);
      }
    }
  }
}

void PagedAttention(const Tensor& q, const PagedKv& kv, const BatchLayout& batch, const Tensor& score_head,
                    Tensor* out) {
  const int64_t d = kv.pool.dim(2), q_width = q.dim(1);
  const int heads = static_cast<int>(q_width / d), group = heads / kv.kv_heads;
  const CacheIndex index{kv, batch, kv.pool.data<float>(), d};
  const int32_t* q_start = batch.q_start.data<int32_t>();
  const int32_t* lens = batch.seq_lens.data<int32_t>();
  const int32_t* map = score_head.data<int32_t>();
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));

  // One task per (query row, representative).
  struct Task {
    int s;
    int64_t row;
    int rep;
  };
  std::vector<Task> tasks;
  for (int s = 0; s < batch.num_seqs; ++s)
    for (int64_t row = q_start[s]; row < q_start[s + 1]; ++row)
      for (int h = 0; h < heads; ++h)
        if (map[index.Row(s) * heads + h] == h) tasks.push_back({s, row, h});

  ParallelFor(static_cast<int64_t>(tasks.size()), 1, [&](int64_t begin, int64_t end) {
    std::vector<float> probs;
    for (int64_t t = begin; t < end; ++t) {
      const auto [s, row, r] = tasks[t];
      const int64_t n = q_start[s + 1] - q_start[s];
      const int64_t visible = lens[s] - n + (row - q_start[s]) + 1;
      probs.resize(visible);
      const float* qr = q.data<float>() + row * q_width + r * d;
      float mx = -INFINITY;
      for (int64_t j = 0; j < visible; ++j) {
        probs[j] = Dot(qr, index.At(s, 0, r / group, j), d) * scale;
        mx = std::max(mx, probs[j]);
      }
      double sum = 0;
      for (int64_t j = 0; j < visible; ++j) sum += (probs[j] = std::exp(probs[j] - mx));
      const float inv = static_cast<float>(1.0 / sum);
      for (int64_t j = 0; j < visible; ++j) probs[j] *= inv;
      for (int h = 0; h < heads; ++h) {
        if (map[index.Row(s) * heads + h] != r) continue;
        float* o = out->data<float>() + row * q_width + h * d;
        std::fill(o, o + d, 0.f);
        for (int64_t j = 0; j < visible; ++j) {
          const float* vj = index.At(s, 1, h / group, j);
          const float p = probs[j];
          for (int64_t c = 0; c < d; ++c) o[c] += p * vj[c];
        }
      }
    }
  });
}

}  // namespace chai::cpu
