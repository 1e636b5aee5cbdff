// CPU ops against straightforward double-precision references on fresh random inputs, with
// outputs poisoned before each op so that unwritten elements cannot pass.
#include <cmath>
#include <numeric>
#include <random>

#include "gtest/gtest.h"
#include "kernels/ops.h"
#include "tests/support/host_tensors.h"

namespace chai {
namespace {

std::mt19937 rng(1234);

Tensor Random(std::vector<int64_t> shape, float scale = 1.f) { return testing::RandomNormal(shape, rng, scale); }
Tensor Poisoned(std::vector<int64_t> shape) { return testing::NanPoisoned(shape); }

double RelErr(const Tensor& out, const std::vector<double>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double d = out.data<float>()[i] - ref[i];
    if (!std::isfinite(out.data<float>()[i])) return INFINITY;
    num += d * d;
    den += ref[i] * ref[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

TEST(Ops, LinearWithBiasOddShapes) {
  for (auto [t, k, n] : {std::tuple{1, 7, 5}, {3, 64, 33}, {17, 129, 70}}) {
    Tensor x = Random({t, k}), w = Random({n, k}), b = Random({n}), out = Poisoned({t, n});
    ops::Linear(x, w, b, &out);
    std::vector<double> ref(t * n);
    for (int i = 0; i < t; ++i)
      for (int j = 0; j < n; ++j) {
        double acc = b.data<float>()[j];
        for (int c = 0; c < k; ++c) acc += double(x.data<float>()[i * k + c]) * w.data<float>()[j * k + c];
        ref[i * n + j] = acc;
      }
    EXPECT_LT(RelErr(out, ref), 1e-5) << t << "x" << k << "x" << n;
  }
}

TEST(Ops, LayerNormAndRmsNorm) {
  const int t = 5, c = 37;
  Tensor x = Random({t, c}, 3.f), w = Random({c}), b = Random({c});
  Tensor ln = Poisoned({t, c}), rms = Poisoned({t, c});
  ops::LayerNorm(x, w, b, 1e-5f, &ln);
  ops::RmsNorm(x, w, 1e-6f, &rms);
  std::vector<double> ref_ln(t * c), ref_rms(t * c);
  for (int i = 0; i < t; ++i) {
    double mean = 0, var = 0, ss = 0;
    for (int j = 0; j < c; ++j) mean += x.data<float>()[i * c + j];
    mean /= c;
    for (int j = 0; j < c; ++j) {
      const double v = x.data<float>()[i * c + j];
      var += (v - mean) * (v - mean);
      ss += v * v;
    }
    var /= c;
    for (int j = 0; j < c; ++j) {
      const double v = x.data<float>()[i * c + j];
      ref_ln[i * c + j] = (v - mean) / std::sqrt(var + 1e-5) * w.data<float>()[j] + b.data<float>()[j];
      ref_rms[i * c + j] = v / std::sqrt(ss / c + 1e-6) * w.data<float>()[j];
    }
  }
  EXPECT_LT(RelErr(ln, ref_ln), 1e-5);
  EXPECT_LT(RelErr(rms, ref_rms), 1e-5);
}

TEST(Ops, SiluMulReluAdd) {
  Tensor g = Random({3, 11}), u = Random({3, 11}), out = Poisoned({3, 11});
  ops::SiluMul(g, u, &out);
  std::vector<double> ref(33), relu(33), sum(33);
  for (int i = 0; i < 33; ++i) {
    const double gv = g.data<float>()[i];
    ref[i] = gv / (1 + std::exp(-gv)) * u.data<float>()[i];
    relu[i] = std::max(0.0, gv);
    sum[i] = gv + u.data<float>()[i];
  }
  EXPECT_LT(RelErr(out, ref), 1e-5);
  Tensor s = Poisoned({3, 11});
  ops::Add(g, u, &s);
  EXPECT_LT(RelErr(s, sum), 1e-6);
  ops::Relu(&g);
  EXPECT_LT(RelErr(g, relu), 1e-7);
}

TEST(Ops, EmbeddingOfAVocabularySlice) {
  Tensor table = Random({6, 4}), out = Poisoned({3, 4});
  // This rank holds rows 10..15 of the vocabulary: id 12 -> row 2; ids 3 and 16 are elsewhere.
  Tensor ids = Tensor::FromInts({12, 3, 16}, {3});
  ops::Embedding(table, ids, 10, &out);
  std::vector<double> ref(12, 0.0);
  for (int c = 0; c < 4; ++c) ref[c] = table.data<float>()[2 * 4 + c];
  EXPECT_LT(RelErr(out, ref), 1e-7);
}

TEST(Ops, RotaryMatchesRotateHalf) {
  const int heads = 3, d = 8;
  Tensor x = Random({2, heads * d});
  Tensor original = x.Clone();
  std::vector<int32_t> pos = {0, 1000};
  ops::Rotary(&x, Tensor::FromInts(pos, {2}), heads, d, 10000.f);
  std::vector<double> ref(x.numel());
  for (int t = 0; t < 2; ++t)
    for (int h = 0; h < heads; ++h)
      for (int i = 0; i < d / 2; ++i) {
        const double angle = pos[t] * std::pow(10000.0, -2.0 * i / d);
        const float* v = original.data<float>() + t * heads * d + h * d;
        ref[t * heads * d + h * d + i] = v[i] * std::cos(angle) - v[i + d / 2] * std::sin(angle);
        ref[t * heads * d + h * d + i + d / 2] = v[i + d / 2] * std::cos(angle) + v[i] * std::sin(angle);
      }
  EXPECT_LT(RelErr(x, ref), 1e-5);
}

// Naive attention over dense per-head K/V arrays: every head uses its score head's causal
// softmax with its own V.
std::vector<double> NaiveAttention(const float* q, int64_t rows, int heads, int d, int kv_heads,
                                   const std::vector<std::vector<float>>& k, const std::vector<std::vector<float>>& v,
                                   int64_t past, const int32_t* score_head) {
  const int group = heads / kv_heads;
  std::vector<double> out(rows * heads * d, 0.0);
  for (int h = 0; h < heads; ++h) {
    const int s = score_head[h];
    for (int64_t t = 0; t < rows; ++t) {
      const int64_t n = past + t + 1;
      std::vector<double> p(n);
      double mx = -INFINITY, sum = 0;
      for (int64_t j = 0; j < n; ++j) {
        double dot = 0;
        for (int c = 0; c < d; ++c) dot += double(q[t * heads * d + s * d + c]) * k[s / group][j * d + c];
        p[j] = dot / std::sqrt(double(d));
        mx = std::max(mx, p[j]);
      }
      for (auto& e : p) sum += (e = std::exp(e - mx));
      for (int64_t j = 0; j < n; ++j)
        for (int c = 0; c < d; ++c) out[(t * heads + h) * d + c] += p[j] / sum * v[h / group][j * d + c];
    }
  }
  return out;
}

// Two sequences (a 5-token prefill and a 1-token step at position 20) over a paged cache with
// shuffled block ids; GQA; one dense and one CHAI score map; dropped K heads have no blocks.
TEST(Ops, PagedAppendAndAttention) {
  const int heads = 6, kv_heads = 3, d = 16, bs = 4, num_blocks = 64;
  const std::vector<int> new_tokens = {5, 1}, lens = {5, 21};
  const std::vector<std::vector<int32_t>> maps = {{0, 1, 2, 3, 4, 5}, {0, 0, 2, 2, 2, 5}};
  const int max_blocks = (21 + bs - 1) / bs;
  Tensor pool = Poisoned({num_blocks, bs, d});
  std::vector<int32_t> ids(num_blocks);
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);
  Tensor tables = Tensor::Empty({2, 2, kv_heads, max_blocks}, DType::kI32);
  std::fill(tables.data<int32_t>(), tables.data<int32_t>() + tables.numel(), -1);
  size_t next = 0;
  // Host copies of every position's K/V per (sequence, kv head), the reference's view.
  std::vector<std::vector<std::vector<float>>> K(2, std::vector<std::vector<float>>(kv_heads)), V = K;
  for (int s = 0; s < 2; ++s)
    for (int side = 0; side < 2; ++side)
      for (int g = 0; g < kv_heads; ++g) {
        // Sequence 1 (CHAI, reps 0, 2, 5 -> KV heads 0, 1, 2) keeps all K; drop none here, but
        // sequence 0 drops nothing either: dropped heads are exercised in the engine tests.
        for (int b = 0; b < (lens[s] + bs - 1) / bs; ++b)
          tables.data<int32_t>()[((s * 2 + side) * kv_heads + g) * max_blocks + b] = ids[next++];
      }
  // Old positions of sequence 1 are written straight into the pool; new rows through PagedAppend.
  auto slot = [&](int s, int side, int g, int pos) {
    const int32_t b = tables.data<int32_t>()[((s * 2 + side) * kv_heads + g) * max_blocks + pos / bs];
    return pool.data<float>() + (int64_t(b) * bs + pos % bs) * d;
  };
  std::normal_distribution<float> dist(0.f, 1.f);
  for (int s = 0; s < 2; ++s)
    for (int g = 0; g < kv_heads; ++g) {
      K[s][g].resize(lens[s] * d);
      V[s][g].resize(lens[s] * d);
      for (int pos = 0; pos < lens[s] - new_tokens[s]; ++pos)
        for (int c = 0; c < d; ++c) {
          slot(s, 0, g, pos)[c] = K[s][g][pos * d + c] = dist(rng);
          slot(s, 1, g, pos)[c] = V[s][g][pos * d + c] = dist(rng);
        }
    }
  const int T = 6;
  Tensor q = Random({T, heads * d}), k = Random({T, kv_heads * d}), v = Random({T, kv_heads * d});
  std::vector<int32_t> q_start = {0, 5, 6};
  for (int s = 0; s < 2; ++s)
    for (int i = 0; i < new_tokens[s]; ++i)
      for (int g = 0; g < kv_heads; ++g)
        for (int c = 0; c < d; ++c) {
          const int pos = lens[s] - new_tokens[s] + i, row = q_start[s] + i;
          K[s][g][pos * d + c] = k.data<float>()[row * kv_heads * d + g * d + c];
          V[s][g][pos * d + c] = v.data<float>()[row * kv_heads * d + g * d + c];
        }
  PagedKv kv{pool, tables, bs, kv_heads, max_blocks};
  BatchLayout batch;
  batch.q_start = Tensor::FromInts(q_start, {3});
  batch.seq_lens = Tensor::FromInts({5, 21}, {2});
  batch.num_seqs = 2;
  batch.max_new_tokens = 5;
  batch.max_seq_len = 21;
  ops::PagedAppend(k, v, kv, batch);
  std::vector<int32_t> flat_map;
  for (const auto& m : maps) flat_map.insert(flat_map.end(), m.begin(), m.end());
  Tensor out = Poisoned({T, heads * d});
  ops::PagedAttention(q, kv, batch, Tensor::FromInts(flat_map, {2, heads}), &out);
  for (int s = 0; s < 2; ++s) {
    const auto ref = NaiveAttention(q.data<float>() + q_start[s] * heads * d, new_tokens[s], heads, d, kv_heads,
                                    K[s], V[s], lens[s] - new_tokens[s], maps[s].data());
    Tensor rows = out.Rows(q_start[s], q_start[s + 1]);
    EXPECT_LT(RelErr(rows, ref), 1e-5) << "sequence " << s;
  }
}

TEST(DType, HalfAndBfloatRoundTrip) {
  for (float f : {0.f, 1.f, -2.5f, 65504.f, 6.1e-5f, 3e-7f, 1e-3f, 123.456f}) {
    EXPECT_NEAR(HalfToFloat(FloatToHalf(f)), f, std::fabs(f) * 1e-3 + 6e-8) << f;
    EXPECT_NEAR(BFloat16ToFloat(FloatToBFloat16(f)), f, std::fabs(f) * 8e-3 + 1e-30) << f;
  }
  EXPECT_EQ(FloatToHalf(1e6f), 0x7C00);            // overflow to inf
  EXPECT_EQ(HalfToFloat(0x3C00), 1.0f);
  EXPECT_EQ(FloatToHalf(HalfToFloat(0x0001)), 0x0001);  // smallest subnormal survives
}

}  // namespace
}  // namespace chai
