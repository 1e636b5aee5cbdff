// The harness of paged_attention_gpu_test: random paged caches, CHAI score-head maps, one decode
// or prefill step through PagedAppend and PagedAttention, and a naive double-precision reference
// written here (independent of the CPU op). See the test's header comment for what is checked.
#ifndef CHAI_TESTS_GPU_PAGED_ATTENTION_HARNESS_H_
#define CHAI_TESTS_GPU_PAGED_ATTENTION_HARNESS_H_

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/parallel_for.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/device_memory.h"
#include "kernels/paged_kv.h"
#include "kernels/tensor.h"

namespace chai::paged_attention_test {

inline std::mt19937& Rng() {
  static std::mt19937 rng(71);
  return rng;
}

// Values as the dtype stores them (rounded), kept in fp32. Filled in fixed pieces of 64K values on
// all cores, each piece from its own generator seeded by (one draw of Rng(), piece index): the
// same values whatever the thread count, without one generator being the test's hot spot.
inline std::vector<float> RandomRounded(size_t n, DType dtype, float scale) {
  constexpr size_t kPiece = size_t{1} << 16;
  const uint32_t seed = Rng()();
  std::vector<float> v(n);
  cpu::ParallelFor(static_cast<int64_t>((n + kPiece - 1) / kPiece), 1, [&](int64_t begin, int64_t end) {
    std::vector<uint16_t> tmp;
    for (int64_t piece = begin; piece < end; ++piece) {
      std::seed_seq seq{seed, static_cast<uint32_t>(piece)};
      std::mt19937 rng(seq);
      std::normal_distribution<float> dist(0.f, scale);
      float* x = v.data() + piece * kPiece;
      const size_t m = std::min(kPiece, n - piece * kPiece);
      for (size_t i = 0; i < m; ++i) x[i] = dist(rng);
      if (dtype == DType::kF32) continue;
      tmp.resize(m);
      ConvertFloats(x, DType::kF32, tmp.data(), dtype, m);
      ConvertFloats(tmp.data(), dtype, x, DType::kF32, m);
    }
  });
  return v;
}

// A host tensor of `dtype` holding `values`.
inline Tensor HostTensor(const std::vector<float>& values, std::vector<int64_t> shape, DType dtype) {
  Tensor t = Tensor::Empty(std::move(shape), dtype);
  ConvertFloats(values.data(), DType::kF32, t.raw(), dtype, values.size());
  return t;
}

inline Tensor DeviceInts(const std::vector<int32_t>& values) {
  return Tensor::FromInts(values, {static_cast<int64_t>(values.size())}).To(Device::kCuda);
}

// Score-head map from a list of cluster labels: head h joins the cluster of the first head with
// its label, which is then its representative (the lowest index, as CHAI picks it).
inline std::vector<int> MapFromLabels(const std::vector<int>& labels) {
  std::vector<int> map(labels.size());
  for (size_t h = 0; h < labels.size(); ++h) {
    size_t first = 0;
    while (labels[first] != labels[h]) ++first;
    map[h] = static_cast<int>(first);
  }
  return map;
}

inline std::vector<int> Dense(int heads) {
  std::vector<int> map(heads);
  std::iota(map.begin(), map.end(), 0);
  return map;
}

// A random clustering of `heads` into `k` clusters (every cluster non-empty).
inline std::vector<int> RandomClusters(int heads, int k) {
  std::vector<int> labels(heads);
  for (int h = 0; h < heads; ++h) labels[h] = h < k ? h : static_cast<int>(Rng()() % k);
  std::shuffle(labels.begin(), labels.end(), Rng());
  return MapFromLabels(labels);
}

struct Case {
  std::string name;
  int heads = 4, kv_heads = 4, d = 64, block_size = 16;
  std::vector<int> lens;               // positions after the step
  std::vector<int> news;               // new rows per sequence (0, 1, or more)
  std::vector<std::vector<int>> maps;  // score_head per sequence
  int extra_max_len = 0;               // added to max_seq_len (a loose bound, as a captured graph would pass)
  int hint = 1;                        // kv.members_per_rep: changes the decode split, never the result
  L2Prefetch then;                     // kv.then: weights to fetch into L2, never changes the result
  // Block ids handed out in shuffled runs of 1-6 consecutive ids (as the engine's cache mostly
  // holds them) instead of one by one: kernel 4 may copy such runs whole.
  bool block_runs = false;
  // The sequences' block tables and score-head maps at shuffled rows among num_seqs + 3 (batch.slots
  // names each one's, as the engine's persistent rows are) instead of at row s; the spare rows hold
  // identity maps and tables of -1, which a kernel reading row s instead would show.
  bool row_slots = false;
};

// A case's inputs for one dtype, built on the host once and shared by every kernel run: the pool
// before the step (poisoned past the written slots) and as PagedAppend must leave it, the tables,
// the step's q and new K/V rows, and the double-precision reference output.
struct Inputs {
  int T = 0, max_len = 0, max_new = 0, num_blocks = 0, max_blocks = 0;
  std::vector<int32_t> q_start, tables, score_flat;
  Tensor pool_before, pool_expected;  // host tensors of the dtype
  Tensor q, k_new, v_new;             // host tensors of the dtype
  std::vector<double> ref;            // [T, heads, d]
  std::vector<char> has_ref;          // [T, heads]: the head's representative is one (always, in valid maps)
};

inline Inputs BuildInputs(const Case& c, DType dtype) {
  const int S = static_cast<int>(c.lens.size()), H = c.heads, KV = c.kv_heads, G = H / KV, d = c.d, bs = c.block_size;
  const size_t esize = DTypeSize(dtype);
  Inputs in;
  in.q_start.assign(S + 1, 0);
  for (int s = 0; s < S; ++s) in.q_start[s + 1] = in.q_start[s] + c.news[s];
  const std::vector<int32_t>& q_start = in.q_start;
  const int T = in.T = q_start[S];
  for (int s = 0; s < S; ++s) {
    in.max_len = std::max(in.max_len, c.lens[s]);
    in.max_new = std::max(in.max_new, c.news[s]);
  }

  // Which K heads exist: those of a representative's KV head.
  std::vector<std::vector<bool>> has_k(S, std::vector<bool>(KV, false));
  for (int s = 0; s < S; ++s)
    for (int h = 0; h < H; ++h)
      if (c.maps[s][h] == h) has_k[s][h / G] = true;

  // Values of every (sequence, side, KV head, position), rounded to the dtype.
  // vals[s][side][g] has lens[s] * d floats.
  std::vector<std::vector<std::vector<std::vector<float>>>> vals(S);
  for (int s = 0; s < S; ++s) {
    vals[s].resize(2);
    for (int side = 0; side < 2; ++side)
      for (int g = 0; g < KV; ++g) vals[s][side].push_back(RandomRounded(size_t(c.lens[s]) * d, dtype, 1.f));
  }

  // Block assignment from a shuffled pool with spare blocks.
  int needed = 0, max_blocks = 0;
  for (int s = 0; s < S; ++s) {
    const int nb = (c.lens[s] + bs - 1) / bs;
    max_blocks = std::max(max_blocks, nb);
    for (int g = 0; g < KV; ++g) needed += nb * (has_k[s][g] ? 2 : 1);
  }
  max_blocks += 2;  // -1 tails on every list
  const int num_blocks = needed + needed / 4 + 3;
  in.max_blocks = max_blocks;
  in.num_blocks = num_blocks;
  std::vector<int32_t> ids(num_blocks);
  std::iota(ids.begin(), ids.end(), 0);
  if (c.block_runs) {
    std::vector<std::vector<int32_t>> runs;
    std::uniform_int_distribution<int> run_len(1, 6);
    for (int i = 0; i < num_blocks;) {
      const int n = std::min(run_len(Rng()), num_blocks - i);
      runs.emplace_back(ids.begin() + i, ids.begin() + i + n);
      i += n;
    }
    std::shuffle(runs.begin(), runs.end(), Rng());
    ids.clear();
    for (const auto& r : runs) ids.insert(ids.end(), r.begin(), r.end());
  } else {
    std::shuffle(ids.begin(), ids.end(), Rng());
  }
  std::vector<int32_t>& tables = in.tables;
  tables.assign(size_t(S) * 2 * KV * max_blocks, -1);
  const size_t slots = size_t(num_blocks) * bs;
  std::vector<float> pool_vals(slots * d, 0.f);
  std::vector<char> past_slot(slots, 0), final_slot(slots, 0);
  int next = 0;
  for (int s = 0; s < S; ++s)
    for (int side = 0; side < 2; ++side)
      for (int g = 0; g < KV; ++g) {
        if (side == 0 && !has_k[s][g]) continue;
        int32_t* table = &tables[((size_t(s) * 2 + side) * KV + g) * max_blocks];
        const int nb = (c.lens[s] + bs - 1) / bs;
        for (int b = 0; b < nb; ++b) table[b] = ids[next++];
        for (int pos = 0; pos < c.lens[s]; ++pos) {
          const size_t slot = size_t(table[pos / bs]) * bs + pos % bs;
          std::copy_n(&vals[s][side][g][size_t(pos) * d], d, &pool_vals[slot * d]);
          final_slot[slot] = 1;
          past_slot[slot] = pos < c.lens[s] - c.news[s];
        }
      }

  // Pool before the step (past positions only) and expected after PagedAppend; NaN elsewhere.
  auto poisoned_pool = [&](const std::vector<char>& keep) {
    Tensor t = HostTensor(pool_vals, {num_blocks, bs, d}, dtype);
    for (size_t slot = 0; slot < slots; ++slot)
      if (!keep[slot]) std::memset(static_cast<char*>(t.raw()) + slot * d * esize, 0xFF, d * esize);
    return t;
  };
  in.pool_before = poisoned_pool(past_slot);
  in.pool_expected = poisoned_pool(final_slot);

  // The step's rows: q (random), and the new K/V rows (all heads, including absent K heads).
  std::vector<float> q = RandomRounded(size_t(std::max(T, 1)) * H * d, dtype, 1.5f);
  std::vector<float> k_new(size_t(std::max(T, 1)) * KV * d), v_new(k_new.size());
  std::vector<float> junk = RandomRounded(k_new.size(), dtype, 1.f);
  for (int s = 0; s < S; ++s)
    for (int i = 0; i < c.news[s]; ++i) {
      const int t = q_start[s] + i, pos = c.lens[s] - c.news[s] + i;
      for (int g = 0; g < KV; ++g) {
        float* kd = &k_new[(size_t(t) * KV + g) * d];
        if (has_k[s][g]) {
          std::copy_n(&vals[s][0][g][size_t(pos) * d], d, kd);
        } else {
          std::copy_n(&junk[(size_t(t) * KV + g) * d], d, kd);  // must not land anywhere
        }
        std::copy_n(&vals[s][1][g][size_t(pos) * d], d, &v_new[(size_t(t) * KV + g) * d]);
      }
    }
  for (int s = 0; s < S; ++s) in.score_flat.insert(in.score_flat.end(), c.maps[s].begin(), c.maps[s].end());
  in.q = HostTensor(q, {T, int64_t{H} * d}, dtype);
  in.k_new = HostTensor(k_new, {T, int64_t{KV} * d}, dtype);
  in.v_new = HostTensor(v_new, {T, int64_t{KV} * d}, dtype);

  // Naive reference in double: per (sequence, new row, representative) the causal softmax of
  // its scores, applied to each member's V. Rows are independent, so they run on all cores.
  in.ref.assign(size_t(T) * H * d, 0.0);
  in.has_ref.assign(size_t(T) * H, 0);
  const double scale = 1.0 / std::sqrt(double(d));
  cpu::ParallelFor(T, 1, [&](int64_t t_begin, int64_t t_end) {
    std::vector<double> p;
    for (int t = static_cast<int>(t_begin); t < t_end; ++t) {
      const int s = static_cast<int>(std::upper_bound(q_start.begin(), q_start.end(), t) - q_start.begin()) - 1;
      const int i = t - q_start[s], visible = c.lens[s] - c.news[s] + i + 1;
      for (int r = 0; r < H; ++r) {
        if (c.maps[s][r] != r) continue;
        p.assign(visible, 0.0);
        const float* qr = &q[(size_t(t) * H + r) * d];
        double mx = -INFINITY;
        for (int j = 0; j < visible; ++j) {
          const float* kj = &vals[s][0][r / G][size_t(j) * d];
          double dot = 0;
          for (int e = 0; e < d; ++e) dot += double(qr[e]) * kj[e];
          p[j] = dot * scale;
          mx = std::max(mx, p[j]);
        }
        double sum = 0;
        for (double& x : p) sum += (x = std::exp(x - mx));
        for (int h = 0; h < H; ++h) {
          if (c.maps[s][h] != r) continue;
          double* o = &in.ref[(size_t(t) * H + h) * d];
          for (int j = 0; j < visible; ++j) {
            const float* vj = &vals[s][1][h / G][size_t(j) * d];
            const double w = p[j] / sum;
            for (int e = 0; e < d; ++e) o[e] += w * vj[e];
          }
          in.has_ref[size_t(t) * H + h] = 1;
        }
      }
    }
  });
  return in;
}

struct Result {
  double max_err = 0;
  bool pool_ok = false;
  bool repeat_ok = false;  // a second call gave the same bytes
  std::string where;
};

// Runs PagedAppend and PagedAttention (twice) on fresh device copies of `in` with the decode
// kernel the environment selects, and compares with the reference. `outputs`, if given, receives
// the second call's output [T, heads * d] as floats.
inline Result RunKernel(const Case& c, const Inputs& in, DType dtype, std::vector<float>* outputs = nullptr) {
  const int S = static_cast<int>(c.lens.size()), H = c.heads, KV = c.kv_heads, d = c.d, T = in.T;
  // Row of each sequence in the tables and maps: s, or a shuffled one (Case::row_slots).
  const int rows = c.row_slots ? S + 3 : S;
  std::vector<int32_t> row_of(rows);
  std::iota(row_of.begin(), row_of.end(), 0);
  if (c.row_slots) std::shuffle(row_of.begin(), row_of.end(), Rng());
  row_of.resize(S);
  const size_t table_row = size_t{2} * KV * in.max_blocks;
  std::vector<int32_t> tables(rows * table_row, -1), score_flat(size_t(rows) * H);
  for (int r = 0; r < rows; ++r) std::iota(score_flat.begin() + size_t(r) * H, score_flat.begin() + size_t(r + 1) * H, 0);
  for (int s = 0; s < S; ++s) {
    std::copy_n(in.tables.begin() + s * table_row, table_row, tables.begin() + row_of[s] * table_row);
    std::copy_n(in.score_flat.begin() + size_t(s) * H, H, score_flat.begin() + size_t(row_of[s]) * H);
  }
  PagedKv kv;
  kv.pool = in.pool_before.To(Device::kCuda);
  kv.tables = Tensor::FromInts(tables, {rows, 2, KV, in.max_blocks}).To(Device::kCuda);
  kv.block_size = c.block_size;
  kv.kv_heads = KV;
  kv.max_blocks = in.max_blocks;
  kv.members_per_rep = c.hint;
  kv.then = c.then;
  BatchLayout batch;
  batch.q_start = DeviceInts(in.q_start);
  batch.seq_lens = DeviceInts(std::vector<int32_t>(c.lens.begin(), c.lens.end()));
  if (c.row_slots) batch.slots = DeviceInts(row_of);
  batch.num_seqs = S;
  batch.max_new_tokens = in.max_new;
  batch.max_seq_len = in.max_len + c.extra_max_len;
  Tensor score_head = Tensor::FromInts(score_flat, {rows, H}).To(Device::kCuda);
  Tensor q_dev = in.q.To(Device::kCuda);
  Tensor k_dev = in.k_new.To(Device::kCuda);
  Tensor v_dev = in.v_new.To(Device::kCuda);
  Tensor out_host = Tensor::Empty({T, int64_t{H} * d}, dtype);
  std::memset(out_host.raw(), 0xFF, out_host.nbytes());
  Tensor out = out_host.To(Device::kCuda);

  cuda::PagedAppend(k_dev, v_dev, kv, batch);
  cuda::PagedAttention(q_dev, kv, batch, score_head, &out);
  EXPECT_EQ(cudaStreamSynchronize(cuda::CurrentStream()), cudaSuccess);
  // Again on a poisoned output: the split counters must have been left at zero, and the result
  // (a fixed merge order) must repeat bit for bit.
  const Tensor first = out.To(Device::kCpu);
  EXPECT_EQ(cudaMemsetAsync(out.raw(), 0xFF, out.nbytes(), cuda::CurrentStream()), cudaSuccess);
  cuda::PagedAttention(q_dev, kv, batch, score_head, &out);
  EXPECT_EQ(cudaStreamSynchronize(cuda::CurrentStream()), cudaSuccess);

  Result result;
  result.repeat_ok = std::memcmp(first.raw(), out.To(Device::kCpu).raw(), first.nbytes()) == 0;
  Tensor pool_after = kv.pool.To(Device::kCpu);
  result.pool_ok = std::memcmp(pool_after.raw(), in.pool_expected.raw(), pool_after.nbytes()) == 0;

  // Relative error per (row, head); the worst one is reported.
  const std::vector<float> got = out.ToFloats();
  if (outputs != nullptr) *outputs = got;
  for (int s = 0; s < S; ++s)
    for (int i = 0; i < c.news[s]; ++i) {
      const int t = in.q_start[s] + i;
      for (int h = 0; h < H; ++h) {
        if (!in.has_ref[size_t(t) * H + h]) continue;
        const double* o = &in.ref[(size_t(t) * H + h) * d];
        double num = 0, den = 0;
        for (int e = 0; e < d; ++e) {
          const double x = got[(size_t(t) * H + h) * d + e];
          num += std::isfinite(x) ? (x - o[e]) * (x - o[e]) : INFINITY;
          den += o[e] * o[e];
        }
        const double err = std::sqrt(num / std::max(den, 1e-30));
        if (!(err <= result.max_err)) {
          result.max_err = err;
          result.where = "seq " + std::to_string(s) + " (len " + std::to_string(c.lens[s]) + ", new " +
                         std::to_string(c.news[s]) + ") row " + std::to_string(i) + " head " + std::to_string(h) +
                         " rep " + std::to_string(c.maps[s][h]);
        }
      }
    }
  return result;
}

// Every case runs with every decode kernel that has an instance for it (CHAI_DECODE_KERNEL 1-4,
// read by PagedAttention at each call), all on the same inputs and reference per dtype. Cases with
// prefill rows (a sequence with > 1 new row) also run prefill kernel 2 (CHAI_PREFILL_KERNEL=2)
// where it has an instance (fp16/bf16, head_dim a multiple of 16 up to 128) in each of its four
// shapes (CHAI_PREFILL_ROWS 64/128 x CHAI_PREFILL_MEMBERS 1/2, whatever the case's hint), with
// the same checks.
inline void Check(const Case& c) {
  // Kernels 2 and 3 have instances for head_dim 64/80/96/128 (kernel 2 with at most 4 query
  // heads per KV head, kernel 3 with any group) and only decode; elsewhere they fall back to
  // kernel 1, which is checked anyway.
  const bool fast_dim = c.d == 64 || c.d == 80 || c.d == 96 || c.d == 128;
  const bool has_decode = std::find(c.news.begin(), c.news.end(), 1) != c.news.end();
  const bool has_prefill = std::any_of(c.news.begin(), c.news.end(), [](int n) { return n > 1; });
  const bool v2_applies = fast_dim && c.heads / c.kv_heads <= 4 && has_decode;
  const bool v3_applies = fast_dim && has_decode;
  // Kernel 4 runs where PagedAttention takes it: fp16/bf16, head_dim 64 or 128, at most 8 query
  // heads per KV head, block_size >= 8. Under hint 1 it runs its dense pass, which takes the layer
  // as dense and writes NaN for a CHAI group, so a CHAI map under hint 1 skips it; under a CHAI
  // hint it runs its two CHAI passes, which compute any map (dense sequences included).
  // Elsewhere it falls back to the default kernels, which are checked anyway.
  const bool decode_dense = [&] {
    for (size_t s = 0; s < c.news.size(); ++s)
      if (c.news[s] == 1 && c.maps[s] != Dense(c.heads)) return false;
    return true;
  }();
  const bool v4_shape = (c.d == 64 || c.d == 128) && c.heads / c.kv_heads <= 8 && c.block_size >= 8 &&
                        has_decode && (c.hint > 1 || decode_dense);
  const double tols[] = {1e-5, 1e-2};
  auto expect = [&](const Result& r, DType dtype, const std::string& kernel) {
    const double tol = tols[dtype == DType::kF32 ? 0 : 1];
    const std::string what = c.name + " " + DTypeName(dtype) + " kernel " + kernel;
    EXPECT_TRUE(r.pool_ok) << what << ": pool after PagedAppend differs";
    EXPECT_TRUE(r.repeat_ok) << what << ": a second call gave different bytes";
    EXPECT_LT(r.max_err, tol) << what << ": worst at " << r.where;
    std::printf("  %-40s %-5s kernel %s max rel err %.3g\n", c.name.c_str(), DTypeName(dtype), kernel.c_str(),
                r.max_err);
  };
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16}) {
    const Inputs in = BuildInputs(c, dtype);
    setenv("CHAI_PREFILL_KERNEL", "1", 1);
    const bool v4_applies = v4_shape && dtype != DType::kF32;
    for (const char* kernel : {"1", "2", "3", "4"}) {
      if ((std::string(kernel) == "2" && !v2_applies) || (std::string(kernel) == "3" && !v3_applies) ||
          (std::string(kernel) == "4" && !v4_applies)) {
        continue;
      }
      setenv("CHAI_DECODE_KERNEL", kernel, 1);
      expect(RunKernel(c, in, dtype), dtype, kernel);
    }
    const bool prefill_v2_applies = has_prefill && dtype != DType::kF32 && c.d % 16 == 0 && c.d <= 128;
    if (prefill_v2_applies) {
      setenv("CHAI_DECODE_KERNEL", "1", 1);
      setenv("CHAI_PREFILL_KERNEL", "2", 1);
      for (const char* rows : {"64", "128"})
        for (const char* members : {"1", "2"}) {
          setenv("CHAI_PREFILL_ROWS", rows, 1);
          setenv("CHAI_PREFILL_MEMBERS", members, 1);
          const std::string kernel = std::string("1, prefill 2 (") + rows + " rows, " + members + " members)";
          expect(RunKernel(c, in, dtype), dtype, kernel);
        }
      unsetenv("CHAI_PREFILL_ROWS");
      unsetenv("CHAI_PREFILL_MEMBERS");
    }
  }
  unsetenv("CHAI_DECODE_KERNEL");
  unsetenv("CHAI_PREFILL_KERNEL");
}

}  // namespace chai::paged_attention_test

#endif  // CHAI_TESTS_GPU_PAGED_ATTENTION_HARNESS_H_
