// CUDA PagedAppend and PagedAttention against a naive double-precision reference written here
// (independent of the CPU op). Each case builds a random paged cache on the host: shuffled block
// ids, -1 tails, K blocks only for KV heads that hold a representative, every unused slot and
// every slot the step is about to fill poisoned with NaN bytes. The step's K/V rows go in
// through PagedAppend (the whole pool is then compared byte for byte with the expected one), and
// PagedAttention's output (NaN-poisoned first) is compared per (row, head) with the reference:
// ||out - ref|| / ||ref|| < 1e-5 in fp32, < 1e-2 in fp16/bf16. PagedAttention runs twice, the
// second time on a re-poisoned output, and must give the same bytes (split counters left at
// zero). Every case runs with every decode kernel that applies (CHAI_DECODE_KERNEL 1, 2 and 3),
// on the same inputs and reference per dtype (built once: the host side is the test's cost).
// Decode cases with a member-split hint (kv.members_per_rep) check that the hint, right or wrong,
// never changes the result.
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

namespace chai {
namespace {

std::mt19937& Rng() {
  static std::mt19937 rng(71);
  return rng;
}

// Values as the dtype stores them (rounded), kept in fp32. Filled in fixed pieces of 64K values on
// all cores, each piece from its own generator seeded by (one draw of Rng(), piece index): the
// same values whatever the thread count, without one generator being the test's hot spot.
std::vector<float> RandomRounded(size_t n, DType dtype, float scale) {
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
Tensor HostTensor(const std::vector<float>& values, std::vector<int64_t> shape, DType dtype) {
  Tensor t = Tensor::Empty(std::move(shape), dtype);
  ConvertFloats(values.data(), DType::kF32, t.raw(), dtype, values.size());
  return t;
}

Tensor DeviceInts(const std::vector<int32_t>& values) {
  return Tensor::FromInts(values, {static_cast<int64_t>(values.size())}).To(Device::kCuda);
}

// Score-head map from a list of cluster labels: head h joins the cluster of the first head with
// its label, which is then its representative (the lowest index, as CHAI picks it).
std::vector<int> MapFromLabels(const std::vector<int>& labels) {
  std::vector<int> map(labels.size());
  for (size_t h = 0; h < labels.size(); ++h) {
    size_t first = 0;
    while (labels[first] != labels[h]) ++first;
    map[h] = static_cast<int>(first);
  }
  return map;
}

std::vector<int> Dense(int heads) {
  std::vector<int> map(heads);
  std::iota(map.begin(), map.end(), 0);
  return map;
}

// A random clustering of `heads` into `k` clusters (every cluster non-empty).
std::vector<int> RandomClusters(int heads, int k) {
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

Inputs BuildInputs(const Case& c, DType dtype) {
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
  std::shuffle(ids.begin(), ids.end(), Rng());
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
// kernel the environment selects, and compares with the reference.
Result RunKernel(const Case& c, const Inputs& in, DType dtype) {
  const int S = static_cast<int>(c.lens.size()), H = c.heads, KV = c.kv_heads, d = c.d, T = in.T;
  PagedKv kv;
  kv.pool = in.pool_before.To(Device::kCuda);
  kv.tables = Tensor::FromInts(in.tables, {S, 2, KV, in.max_blocks}).To(Device::kCuda);
  kv.block_size = c.block_size;
  kv.kv_heads = KV;
  kv.max_blocks = in.max_blocks;
  kv.members_per_rep = c.hint;
  BatchLayout batch;
  batch.q_start = DeviceInts(in.q_start);
  batch.seq_lens = DeviceInts(std::vector<int32_t>(c.lens.begin(), c.lens.end()));
  batch.num_seqs = S;
  batch.max_new_tokens = in.max_new;
  batch.max_seq_len = in.max_len + c.extra_max_len;
  Tensor score_head = Tensor::FromInts(in.score_flat, {S, H}).To(Device::kCuda);
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

// Every case runs with every decode kernel that has an instance for it (CHAI_DECODE_KERNEL,
// read by PagedAttention at each call), all on the same inputs and reference per dtype.
void Check(const Case& c) {
  // Kernels 2 and 3 have instances for head_dim 64/80/96/128 (kernel 2 with at most 4 query
  // heads per KV head, kernel 3 with any group) and only decode; elsewhere they fall back to
  // kernel 1, which is checked anyway.
  const bool fast_dim = c.d == 64 || c.d == 80 || c.d == 96 || c.d == 128;
  const bool has_decode = std::find(c.news.begin(), c.news.end(), 1) != c.news.end();
  const bool v2_applies = fast_dim && c.heads / c.kv_heads <= 4 && has_decode;
  const bool v3_applies = fast_dim && has_decode;
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16}) {
    const Inputs in = BuildInputs(c, dtype);
    for (const char* kernel : {"1", "2", "3"}) {
      if ((std::string(kernel) == "2" && !v2_applies) || (std::string(kernel) == "3" && !v3_applies)) continue;
      setenv("CHAI_DECODE_KERNEL", kernel, 1);
      const Result r = RunKernel(c, in, dtype);
      const double tol = dtype == DType::kF32 ? 1e-5 : 1e-2;
      const std::string what = c.name + " " + DTypeName(dtype) + " kernel " + kernel;
      EXPECT_TRUE(r.pool_ok) << what << ": pool after PagedAppend differs";
      EXPECT_TRUE(r.repeat_ok) << what << ": a second call gave different bytes";
      EXPECT_LT(r.max_err, tol) << what << ": worst at " << r.where;
      std::printf("  %-40s %-5s kernel %s max rel err %.3g\n", c.name.c_str(), DTypeName(dtype), kernel, r.max_err);
    }
  }
  unsetenv("CHAI_DECODE_KERNEL");
}

const std::vector<int> kOddLens = {1, 5, 17, 300, 1000, 4097};

class PagedAttentionGpu : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!CudaAvailable()) {
      std::printf("[  SKIPPED ] no CUDA device is visible (or this build has no CUDA backend)\n");
      GTEST_SKIP() << "no CUDA device is visible (or this build has no CUDA backend)";
    }
  }
};

// ---- decode: one new row per sequence ---------------------------------------------------------

TEST_F(PagedAttentionGpu, DecodeDense) {
  Case c{"decode dense MHA d64", 4, 4, 64, 16};
  c.lens = kOddLens;
  c.news.assign(c.lens.size(), 1);
  c.maps.assign(c.lens.size(), Dense(4));
  Check(c);
}

TEST_F(PagedAttentionGpu, DecodeChai) {
  Case c{"decode CHAI MHA d128", 8, 8, 128, 16};
  c.lens = {17, 300, 4097, 1000, 1, 5};
  c.news.assign(c.lens.size(), 1);
  c.maps = {MapFromLabels({0, 0, 0, 1, 1, 2, 2, 0}),
            RandomClusters(8, 3),
            RandomClusters(8, 2),
            Dense(8),
            RandomClusters(8, 1),
            RandomClusters(8, 4)};
  Check(c);
}

TEST_F(PagedAttentionGpu, DecodeGqaDense) {
  Case c{"decode GQA 8/2 dense d32 bs5", 8, 2, 32, 5};
  c.lens = kOddLens;
  c.news.assign(c.lens.size(), 1);
  c.maps.assign(c.lens.size(), Dense(8));
  Check(c);
}

TEST_F(PagedAttentionGpu, DecodeGqaChai) {
  // Clusters that cross KV groups (V heads shared by members of different representatives).
  Case c{"decode GQA 16/2 CHAI d80", 16, 2, 80, 16};
  c.lens = {300, 4097, 17, 1000, 5, 1};
  c.news.assign(c.lens.size(), 1);
  c.maps = {RandomClusters(16, 4), RandomClusters(16, 3), Dense(16),
            RandomClusters(16, 9), RandomClusters(16, 1), RandomClusters(16, 16)};
  Check(c);
}

TEST_F(PagedAttentionGpu, DecodeMqaSubsets) {
  // 12 query heads on one KV head: more representatives than one CTA takes (8).
  Case c{"decode MQA 12/1 d96", 12, 1, 96, 16};
  c.lens = {1000, 17, 4097, 300};
  c.news.assign(c.lens.size(), 1);
  c.maps = {Dense(12), RandomClusters(12, 10), RandomClusters(12, 3), RandomClusters(12, 9)};
  Check(c);
}

TEST_F(PagedAttentionGpu, DecodeOddBlocks) {
  // Block sizes that are not powers of two, with head sizes that kernels 2 and 3 take: rows of a
  // trip straddle blocks, and CHAI leaves some KV heads without K blocks.
  Case a{"decode GQA 8/2 CHAI d64 bs5", 8, 2, 64, 5};
  a.lens = kOddLens;
  a.news.assign(a.lens.size(), 1);
  a.maps = {Dense(8), RandomClusters(8, 2), RandomClusters(8, 3), RandomClusters(8, 1), Dense(8), RandomClusters(8, 5)};
  a.hint = 4;
  Check(a);
  Case b{"decode CHAI MHA d128 bs7, loose bound", 8, 8, 128, 7};
  b.lens = {4097, 1, 300, 17, 5, 1000};
  b.news.assign(b.lens.size(), 1);
  b.maps = {RandomClusters(8, 2), Dense(8), RandomClusters(8, 3), RandomClusters(8, 1), RandomClusters(8, 4), Dense(8)};
  b.extra_max_len = 2000;
  Check(b);
}

TEST_F(PagedAttentionGpu, DecodeLargeBatchLongChunks) {
  // Enough sequences that each CTA takes a long chunk (several unrolled trips), a loose bound.
  Case c{"decode B=40 CHAI 32 heads d64", 32, 32, 64, 16};
  std::uniform_int_distribution<int> len(1, 4097);
  for (int s = 0; s < 40; ++s) {
    c.lens.push_back(s == 0 ? 4097 : len(Rng()));
    c.news.push_back(1);
    c.maps.push_back(s % 3 == 0 ? Dense(32) : RandomClusters(32, 4));
  }
  c.extra_max_len = 3000;
  Check(c);
}

TEST_F(PagedAttentionGpu, DecodeHeadDims) {
  for (int d : {8, 16, 24, 32, 256}) {  // 24 takes the generic kernel
    Case c{"decode CHAI d" + std::to_string(d), 6, 6, d, 16};
    c.lens = {1, 17, 1000, 300};
    c.news.assign(c.lens.size(), 1);
    c.maps = {Dense(6), RandomClusters(6, 2), RandomClusters(6, 3), Dense(6)};
    Check(c);
  }
}

// ---- decode with a member-split hint (kv.members_per_rep): the members of a representative are
// shared out over several CTAs; a hint that does not match the real clusters costs speed only.

// One cluster of 29 heads with representative `rep` (any of them: the kernel does not assume the
// lowest, as a medoid representative would not be) and three singletons, over 32 heads.
std::vector<int> Unequal32(const std::vector<int>& singletons, int rep) {
  std::vector<int> map(32, rep);
  for (int h : singletons) map[h] = h;
  return map;
}

TEST_F(PagedAttentionGpu, DecodeHintUnequalClusters) {
  // Hints below (2), at (8 = 32 / 4) and above (29, 64) the true sizes 29, 1, 1, 1.
  for (int hint : {2, 8, 29, 64}) {
    Case c{"decode 29+1+1+1 MHA d128 hint " + std::to_string(hint), 32, 32, 128, 16};
    c.lens = {3000, 1, 17, 4097, 640, 2};
    c.news.assign(c.lens.size(), 1);
    c.maps = {Unequal32({5, 17, 30}, 0), Unequal32({0, 1, 2}, 3), Unequal32({29, 30, 31}, 13),
              Unequal32({0, 8, 16}, 31), RandomClusters(32, 4),   Unequal32({4, 9, 31}, 0)};
    c.hint = hint;
    Check(c);
  }
}

TEST_F(PagedAttentionGpu, DecodeHintManySplits) {
  // Few sequences, long contexts: small chunks, dozens of splits merged per (slot, share).
  for (int hint : {1, 4, 8, 32}) {
    Case c{"decode 3000 positions, small chunks, hint " + std::to_string(hint), 32, 32, 64, 16};
    c.lens = {3000, 2999};
    c.news = {1, 1};
    c.maps = {RandomClusters(32, 4), Unequal32({3, 11, 27}, 20)};
    c.hint = hint;
    Check(c);
    c.name += ", loose bound";
    c.extra_max_len = 5000;
    Check(c);
  }
}

TEST_F(PagedAttentionGpu, DecodeHintMixedDenseChai) {
  // Dense sequences (score_head[h] == h) next to CHAI ones under a CHAI hint, decode only and
  // with prefill and idle sequences in the same launch.
  for (int hint : {3, 8}) {
    Case c{"decode mixed dense/CHAI d96 hint " + std::to_string(hint), 24, 24, 96, 16};
    c.lens = {1000, 4097, 17, 300, 1, 2500};
    c.news.assign(c.lens.size(), 1);
    c.maps = {Dense(24),
              RandomClusters(24, 3),
              Dense(24),
              RandomClusters(24, 8),
              RandomClusters(24, 1),
              RandomClusters(24, 24)};
    c.hint = hint;
    Check(c);
    Case m{"mixed decode/prefill/idle d64 hint " + std::to_string(hint), 16, 16, 64, 16};
    m.lens = {4097, 90, 1, 300, 1000, 17, 64};
    m.news = {1, 90, 1, 0, 1, 9, 64};
    m.maps = {RandomClusters(16, 2), Dense(16), Dense(16), RandomClusters(16, 3), Dense(16), RandomClusters(16, 4),
              RandomClusters(16, 1)};
    m.hint = hint;
    Check(m);
  }
}

TEST_F(PagedAttentionGpu, DecodeHintGqaChai) {
  // Shares are whole V heads: members of one V head stay in one CTA, under kG = 4 and 8.
  for (int hint : {2, 4, 16}) {
    Case a{"decode GQA 32/8 CHAI d128 hint " + std::to_string(hint), 32, 8, 128, 16};
    a.lens = {3000, 17, 1000, 4097, 1};
    a.news.assign(a.lens.size(), 1);
    a.maps = {RandomClusters(32, 4), RandomClusters(32, 8), Dense(32), Unequal32({5, 17, 30}, 6),
              RandomClusters(32, 2)};
    a.hint = hint;
    Check(a);
    Case b{"decode GQA 16/2 CHAI d80 hint " + std::to_string(hint), 16, 2, 80, 16};
    b.lens = {300, 4097, 17, 1000, 5};
    b.news.assign(b.lens.size(), 1);
    b.maps = {RandomClusters(16, 4), RandomClusters(16, 3), Dense(16), RandomClusters(16, 9), RandomClusters(16, 1)};
    b.hint = hint;
    Check(b);
    Case q{"decode MQA 12/1 d96 hint " + std::to_string(hint), 12, 1, 96, 16};  // one V head: one share
    q.lens = {1000, 17, 4097};
    q.news.assign(q.lens.size(), 1);
    q.maps = {Dense(12), RandomClusters(12, 3), RandomClusters(12, 9)};
    q.hint = hint;
    Check(q);
  }
}

TEST_F(PagedAttentionGpu, DecodeHintHeadDims) {
  for (int d : {64, 80, 96, 128, 24, 256}) {  // 24 takes the generic kernel
    Case c{"decode CHAI d" + std::to_string(d) + " hint 4", 16, 16, d, 16};
    c.lens = {1, 17, 1000, 3000};
    c.news.assign(c.lens.size(), 1);
    c.maps = {Dense(16), RandomClusters(16, 2), RandomClusters(16, 4), RandomClusters(16, 5)};
    c.hint = 4;
    Check(c);
  }
}

TEST_F(PagedAttentionGpu, DecodeMembersPerCta) {
  // CHAI_DECODE_MEMBERS_PER_CTA picks kernel 2's members per pass (1, 2, 4) and, below the real
  // share sizes, several passes per CTA; GQA 16/8 (2 heads per KV head) takes its group tile.
  for (const char* per_cta : {"1", "3", "8"}) {
    setenv("CHAI_DECODE_MEMBERS_PER_CTA", per_cta, 1);
    Case a{"decode CHAI 32 heads d128 hint 8, " + std::string(per_cta) + " per CTA", 32, 32, 128, 16};
    a.lens = {3000, 17, 4097, 1, 640};
    a.news.assign(a.lens.size(), 1);
    a.maps = {RandomClusters(32, 4), RandomClusters(32, 4), Unequal32({5, 17, 30}, 6), RandomClusters(32, 3), Dense(32)};
    a.hint = 8;
    Check(a);
    Case b{"decode GQA 16/8 d64 hint 4, " + std::string(per_cta) + " per CTA", 16, 8, 64, 16};
    b.lens = {2000, 4097, 33, 700};
    b.news.assign(b.lens.size(), 1);
    b.maps = {Dense(16), RandomClusters(16, 4), RandomClusters(16, 2), RandomClusters(16, 7)};
    b.hint = 4;
    Check(b);
  }
  unsetenv("CHAI_DECODE_MEMBERS_PER_CTA");
}

// ---- prefill: several new rows per sequence ---------------------------------------------------

TEST_F(PagedAttentionGpu, PrefillPrompts) {
  Case c{"prefill prompts dense d16", 2, 2, 16, 16};
  c.lens = {1, 5, 17, 300, 1000, 4097, 2};  // a 1-token prompt takes the decode kernel
  c.news = c.lens;
  c.maps.assign(c.lens.size(), Dense(2));
  Check(c);
}

TEST_F(PagedAttentionGpu, PrefillChaiChunked) {
  // Past context plus a chunk of new rows; a 5-member cluster (odd batches of 2 members).
  Case c{"prefill CHAI chunked d128", 8, 8, 128, 16};
  c.lens = {317, 1000, 40, 130};
  c.news = {17, 69, 40, 65};
  c.maps = {MapFromLabels({0, 0, 1, 0, 0, 2, 0, 1}), RandomClusters(8, 3), Dense(8), RandomClusters(8, 1)};
  Check(c);
}

TEST_F(PagedAttentionGpu, PrefillGqaChai) {
  Case c{"prefill GQA 8/2 CHAI d64 bs7", 8, 2, 64, 7};
  c.lens = {300, 77, 129};
  c.news = {300, 70, 64};
  c.maps = {RandomClusters(8, 3), Dense(8), RandomClusters(8, 5)};
  Check(c);
}

TEST_F(PagedAttentionGpu, PrefillHeadDims) {
  for (int d : {8, 24, 32, 80, 96, 256}) {
    Case c{"prefill CHAI d" + std::to_string(d), 4, 4, d, 16};
    c.lens = {100, 67};
    c.news = {100, 33};
    c.maps = {RandomClusters(4, 2), Dense(4)};
    Check(c);
  }
}

// ---- mixed: decode, prefill and idle sequences, dense and CHAI, in one batch ------------------

TEST_F(PagedAttentionGpu, MixedBatch) {
  Case c{"mixed decode/prefill/idle d64", 8, 8, 64, 16};
  c.lens = {4097, 90, 1, 300, 1000, 17, 64};
  c.news = {1, 90, 1, 0, 1, 9, 64};
  c.maps = {RandomClusters(8, 2), Dense(8), Dense(8), RandomClusters(8, 3), Dense(8), RandomClusters(8, 4),
            RandomClusters(8, 1)};
  Check(c);
}

}  // namespace
}  // namespace chai
