// CPU ops against straightforward double-precision references on fresh random inputs, with
// outputs poisoned before each op so that unwritten elements cannot pass.
#include <cmath>
#include <limits>
#include <random>

#include "gtest/gtest.h"
#include "kernels/ops.h"

namespace chai {
namespace {

std::mt19937 rng(1234);

Tensor Random(std::vector<int64_t> shape, float scale = 1.f) {
  Tensor t = Tensor::Empty(shape, DType::kF32);
  std::normal_distribution<float> dist(0.f, scale);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = dist(rng);
  return t;
}

Tensor Poisoned(std::vector<int64_t> shape) {
  Tensor t = Tensor::Empty(shape, DType::kF32);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = std::numeric_limits<float>::quiet_NaN();
  return t;
}

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
  std::vector<int32_t> ids = {12, 3, 16};
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
  ops::Rotary(&x, pos, heads, d, 10000.f);
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

// Naive attention: every head computes its score head's causal softmax, then its own P.V.
std::vector<double> NaiveAttention(const Tensor& q, const std::vector<Tensor>& k, const std::vector<Tensor>& v,
                                   int64_t past, const std::vector<int>& score_head) {
  const int heads = static_cast<int>(score_head.size()), group = heads / static_cast<int>(v.size());
  const int64_t T = q.dim(0), d = q.dim(1) / heads;
  std::vector<double> out(T * heads * d, 0.0);
  for (int h = 0; h < heads; ++h) {
    const int s = score_head[h];
    for (int64_t t = 0; t < T; ++t) {
      const int64_t n = past + t + 1;
      std::vector<double> p(n);
      double mx = -INFINITY, sum = 0;
      for (int64_t j = 0; j < n; ++j) {
        double dot = 0;
        for (int64_t c = 0; c < d; ++c) dot += double(q.data<float>()[t * heads * d + s * d + c]) * k[s / group].data<float>()[j * d + c];
        p[j] = dot / std::sqrt(double(d));
        mx = std::max(mx, p[j]);
      }
      for (auto& e : p) sum += (e = std::exp(e - mx));
      for (int64_t j = 0; j < n; ++j)
        for (int64_t c = 0; c < d; ++c) out[t * heads * d + h * d + c] += p[j] / sum * v[h / group].data<float>()[j * d + c];
    }
  }
  return out;
}

TEST(Ops, AttentionDenseGqaAndShared) {
  const int heads = 6, kv = 3, d = 16;
  const int64_t past = 7, T = 5, cap = 20;
  std::vector<Tensor> k, v;
  for (int g = 0; g < kv; ++g) {
    k.push_back(Random({cap, d}));
    v.push_back(Random({cap, d}));
  }
  Tensor q = Random({T, heads * d});
  for (std::vector<int> score_head : {std::vector<int>{0, 1, 2, 3, 4, 5}, std::vector<int>{0, 0, 2, 2, 2, 5}}) {
    Tensor out = Poisoned({T, heads * d});
    ops::Attention(q, k, v, past, score_head, &out);
    EXPECT_LT(RelErr(out, NaiveAttention(q, k, v, past, score_head)), 1e-5);
  }
}

TEST(Ops, AppendHeadsSkipsDroppedHeads) {
  Tensor x = Random({2, 3 * 4});
  std::vector<Tensor> heads = {Poisoned({5, 4}), Tensor(), Poisoned({5, 4})};
  ops::AppendHeads(x, absl::MakeSpan(heads), 3);
  for (int t = 0; t < 2; ++t)
    for (int c = 0; c < 4; ++c) {
      EXPECT_EQ(heads[0].data<float>()[(3 + t) * 4 + c], x.data<float>()[t * 12 + c]);
      EXPECT_EQ(heads[2].data<float>()[(3 + t) * 4 + c], x.data<float>()[t * 12 + 8 + c]);
    }
  EXPECT_FALSE(heads[1].defined());
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
