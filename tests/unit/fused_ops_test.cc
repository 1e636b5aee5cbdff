// The fused decode ops (kernels/ops.h) against the compositions of the unfused ops they replace,
// on fresh random inputs with odd row counts and NaN-poisoned outputs. On the CPU the engine's
// results must not change when it switches to the fused ops, so equality is exact.
#include <cmath>
#include <cstring>
#include <random>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/ops.h"
#include "tests/support/host_tensors.h"
#include "tests/support/paged_append_case.h"

namespace chai {
namespace {

std::mt19937 rng(4321);

Tensor Random(std::vector<int64_t> shape, float scale = 1.f, float mean = 0.f) {
  return testing::RandomNormal(shape, rng, scale, mean);
}
Tensor Poisoned(std::vector<int64_t> shape) { return testing::NanPoisoned(shape); }

std::vector<float> Values(const Tensor& t) { return std::vector<float>(t.data<float>(), t.data<float>() + t.numel()); }

// Columns [begin, end) of a 2-D tensor, as a new tensor.
Tensor Cols(const Tensor& t, int64_t begin, int64_t end) {
  Tensor out = Tensor::Empty({t.dim(0), end - begin}, DType::kF32);
  for (int64_t r = 0; r < t.dim(0); ++r) {
    std::memcpy(out.data<float>() + r * (end - begin), t.data<float>() + r * t.dim(1) + begin,
                (end - begin) * sizeof(float));
  }
  return out;
}

TEST(FusedOps, AddNormEqualsAddThenNorm) {
  for (int64_t t : {1, 3, 17}) {
    for (int64_t c : {37, 64}) {
      // A mean far from zero, as residual streams have.
      const Tensor x0 = Random({t, c}, 3.f, 2.f), y = Random({t, c}), w = Random({c}), b = Random({c});
      Tensor sum = Poisoned({t, c});
      ops::Add(x0, y, &sum);
      for (bool rms : {false, true}) {
        for (bool with_bias : {true, false}) {
          if (rms && with_bias) continue;
          const Tensor bias = with_bias ? b : Tensor();
          Tensor ref = Poisoned({t, c});
          if (rms) {
            ops::RmsNorm(sum, w, 1e-6f, &ref);
          } else {
            ops::LayerNorm(sum, w, bias, 1e-5f, &ref);
          }
          for (bool in_place : {false, true}) {
            SCOPED_TRACE(::testing::Message() << (rms ? "AddRmsNorm" : "AddLayerNorm") << " T=" << t << " C=" << c
                                              << " bias=" << with_bias << " in_place=" << in_place);
            Tensor x = x0.Clone();
            Tensor out = in_place ? x : Poisoned({t, c});
            if (rms) {
              ops::AddRmsNorm(&x, y, w, 1e-6f, &out);
            } else {
              ops::AddLayerNorm(&x, y, w, bias, 1e-5f, &out);
            }
            EXPECT_EQ(Values(out), Values(ref));
            if (!in_place) {
              EXPECT_EQ(Values(x), Values(sum)) << "the residual stream keeps the sum";
            }
          }
        }
      }
    }
  }
}

TEST(FusedOps, SiluMulFusedEqualsSiluMulOfBothHalves) {
  for (int64_t t : {1, 3, 17}) {
    for (int64_t f : {1, 11, 128}) {
      const Tensor gu = Random({t, 2 * f}, 2.f);
      Tensor out = Poisoned({t, f}), ref = Poisoned({t, f});
      ops::SiluMulFused(gu, &out);
      ops::SiluMul(Cols(gu, 0, f), Cols(gu, f, 2 * f), &ref);
      EXPECT_EQ(Values(out), Values(ref)) << "T=" << t << " F=" << f;
    }
  }
}

// The stacked projection split three ways, with and without rotary, against the separate
// projections and Rotary, for MHA and GQA head counts.
TEST(FusedOps, SplitQkvRotaryEqualsSeparateProjectionsAndRotary) {
  std::uniform_int_distribution<int32_t> pos_dist(0, 100000);
  struct Heads {
    int heads, kv_heads, head_dim;
  };
  for (Heads hs : {Heads{4, 4, 8}, Heads{8, 2, 16}, Heads{3, 1, 6}}) {
    const int64_t qw = int64_t{hs.heads} * hs.head_dim, kvw = int64_t{hs.kv_heads} * hs.head_dim;
    for (int64_t t : {1, 3, 17}) {
      const Tensor qkv = Random({t, qw + 2 * kvw});
      std::vector<int32_t> pos(t);
      for (auto& p : pos) p = pos_dist(rng);
      pos[0] = 0;
      const Tensor positions = Tensor::FromInts(pos, {t});
      for (bool rotary : {true, false}) {
        SCOPED_TRACE(::testing::Message() << "heads=" << hs.heads << " kv=" << hs.kv_heads << " d=" << hs.head_dim
                                          << " T=" << t << " rotary=" << rotary);
        Tensor q_ref = Cols(qkv, 0, qw), k_ref = Cols(qkv, qw, qw + kvw), v_ref = Cols(qkv, qw + kvw, qw + 2 * kvw);
        if (rotary) {
          ops::Rotary(&q_ref, positions, hs.heads, hs.head_dim, 10000.f);
          ops::Rotary(&k_ref, positions, hs.kv_heads, hs.head_dim, 10000.f);
        }
        Tensor q = Poisoned({t, qw}), k = Poisoned({t, kvw}), v = Poisoned({t, kvw});
        ops::SplitQkvRotary(qkv, rotary ? positions : Tensor(), hs.heads, hs.kv_heads, hs.head_dim, 10000.f, rotary, &q,
                            &k, &v);
        EXPECT_EQ(Values(q), Values(q_ref));
        EXPECT_EQ(Values(k), Values(k_ref));
        EXPECT_EQ(Values(v), Values(v_ref));
      }
    }
  }
}

// The split with the cache append fused in, against SplitQkvRotary then PagedAppend: the same
// q (and k, v when kept) and the same pool, byte for byte, NaN-poisoned slots included. MHA, GQA
// and odd head sizes; decode, prefill and mixed steps; table rows by slot or by sequence; CHAI
// tables whose dropped K heads have no blocks.
TEST(FusedOps, SplitQkvRotaryAppendEqualsSplitThenPagedAppend) {
  struct Heads {
    int heads, kv_heads, head_dim;
  };
  for (Heads hs : {Heads{4, 4, 8}, Heads{8, 2, 16}, Heads{3, 1, 6}, Heads{6, 3, 10}}) {
    const int64_t qw = int64_t{hs.heads} * hs.head_dim, kvw = int64_t{hs.kv_heads} * hs.head_dim;
    for (const test::StepShape& shape : test::PagedAppendShapes()) {
      for (int variant = 0; variant < 4; ++variant) {
        const bool use_slots = variant & 1, drop_k = variant & 2;
        const test::PagedAppendCase c =
            test::MakePagedAppendCase(rng, hs.kv_heads, 4, shape.new_tokens, shape.lens, use_slots, drop_k);
        const int64_t t = c.rows;
        const Tensor qkv = Random({t, qw + 2 * kvw});
        const BatchLayout batch = test::HostLayout(c);
        for (bool rotary : {true, false}) {
          for (int keep = 0; keep < 3; ++keep) {  // k and v kept, k only, neither
            SCOPED_TRACE(::testing::Message() << "heads=" << hs.heads << " kv=" << hs.kv_heads << " d=" << hs.head_dim
                                              << " T=" << t << " seqs=" << c.num_seqs << " slots=" << use_slots
                                              << " drop_k=" << drop_k << " rotary=" << rotary << " keep=" << keep);
            Tensor q_ref = Poisoned({t, qw}), k_ref = Poisoned({t, kvw}), v_ref = Poisoned({t, kvw});
            Tensor pool_ref = Poisoned({c.num_blocks, c.block_size, hs.head_dim});
            ops::SplitQkvRotary(qkv, c.positions, hs.heads, hs.kv_heads, hs.head_dim, 10000.f, rotary, &q_ref, &k_ref,
                                &v_ref);
            ops::PagedAppend(k_ref, v_ref, PagedKv{pool_ref, c.tables, c.block_size, hs.kv_heads, c.max_blocks}, batch);

            Tensor q = Poisoned({t, qw}), k = Poisoned({t, kvw}), v = Poisoned({t, kvw});
            Tensor pool = Poisoned({c.num_blocks, c.block_size, hs.head_dim});
            ops::SplitQkvRotaryAppend(qkv, c.positions, hs.heads, hs.kv_heads, hs.head_dim, 10000.f, rotary,
                                      PagedKv{pool, c.tables, c.block_size, hs.kv_heads, c.max_blocks}, batch, &q,
                                      keep < 2 ? &k : nullptr, keep < 1 ? &v : nullptr);
            EXPECT_EQ(Values(q), Values(q_ref));
            if (keep < 2) {
              EXPECT_EQ(Values(k), Values(k_ref));
            }
            if (keep < 1) {
              EXPECT_EQ(Values(v), Values(v_ref));
            }
            EXPECT_EQ(std::memcmp(pool.raw(), pool_ref.raw(), pool.nbytes()), 0) << "pools differ";
            // Not vacuous: the reference wrote this step's rows (and left the rest poisoned).
            int64_t written = 0;
            for (float x : Values(pool_ref)) written += !std::isnan(x);
            int64_t expected = 0;
            for (int s = 0; s < c.num_seqs; ++s) {
              for (int g = 0; g < hs.kv_heads; ++g) {
                const bool has_k = !(drop_k && (g + s) % 3 == 1);
                expected += int64_t{shape.new_tokens[s]} * hs.head_dim * (has_k ? 2 : 1);
              }
            }
            EXPECT_EQ(written, expected);
          }
        }
      }
    }
  }
}

// QkvLinearAppend on the CPU is its definition (ops.h): (RmsNorm when given norm weights, then)
// Linear, then SplitQkvRotaryAppend, exactly: q and the pool, NaN-poisoned slots included.
TEST(FusedOps, QkvLinearAppendEqualsComposition) {
  const int heads = 4, kv_heads = 2, head_dim = 8;
  const int64_t k = 24, qw = heads * head_dim, n = qw + 2 * kv_heads * head_dim;
  const test::PagedAppendCase c = test::MakePagedAppendCase(rng, kv_heads, 4, {1, 1, 1}, {3, 9, 6}, true, false);
  const BatchLayout batch = test::HostLayout(c);
  const Tensor x = Random({c.rows, k}, 3.f, 1.f), w = Random({n, k}), b = Random({n}), norm_w = Random({k}, 0.2f, 1.f);
  for (bool norm : {false, true}) {
    SCOPED_TRACE(::testing::Message() << "norm=" << norm);
    Tensor in = x;
    if (norm) {
      in = Poisoned({c.rows, k});
      ops::RmsNorm(x, norm_w, 1e-5f, &in);
    }
    Tensor qkv = Poisoned({c.rows, n});
    ops::Linear(in, w, b, &qkv);
    Tensor q_ref = Poisoned({c.rows, qw}), pool_ref = Poisoned({c.num_blocks, c.block_size, head_dim});
    ops::SplitQkvRotaryAppend(qkv, c.positions, heads, kv_heads, head_dim, 10000.f, true,
                              PagedKv{pool_ref, c.tables, c.block_size, kv_heads, c.max_blocks}, batch, &q_ref, nullptr,
                              nullptr);
    Tensor q = Poisoned({c.rows, qw}), pool = Poisoned({c.num_blocks, c.block_size, head_dim});
    ops::QkvLinearAppend(x, w, b, c.positions, heads, kv_heads, head_dim, 10000.f, true,
                         PagedKv{pool, c.tables, c.block_size, kv_heads, c.max_blocks}, batch, &q,
                         norm ? norm_w : Tensor(), 1e-5f);
    EXPECT_EQ(Values(q), Values(q_ref));
    EXPECT_EQ(std::memcmp(pool.raw(), pool_ref.raw(), pool.nbytes()), 0) << "pools differ";
  }
}

// LinearFused on the CPU is its definition (ops.h): each input and output fusion against RmsNorm,
// Linear, Add, SiluMulFused and Relu called in turn, exactly; the residual stream updated in place.
TEST(FusedOps, LinearFusedEqualsComposition) {
  using ops::LinearOutput;
  for (int64_t t : {1, 3, 17}) {
    for (auto [k, n] : {std::pair<int64_t, int64_t>{40, 24}, {64, 14}}) {
      const Tensor x = Random({t, k}, 3.f, 1.f), w = Random({n, k}), b = Random({n}), norm_w = Random({k});
      const Tensor residual = Random({t, n}, 2.f, 1.f);
      for (bool norm : {false, true}) {
        for (bool with_bias : {false, true}) {
          for (LinearOutput output :
               {LinearOutput::kStore, LinearOutput::kAddTo, LinearOutput::kSiluMul, LinearOutput::kRelu}) {
            SCOPED_TRACE(::testing::Message() << "T=" << t << " K=" << k << " N=" << n << " norm=" << norm
                                              << " bias=" << with_bias << " output=" << static_cast<int>(output));
            const Tensor bias = with_bias ? b : Tensor();
            Tensor in = x;
            if (norm) {
              in = Poisoned({t, k});
              ops::RmsNorm(x, norm_w, 1e-5f, &in);
            }
            Tensor p = Poisoned({t, n});
            ops::Linear(in, w, bias, &p);
            Tensor ref, out;
            if (output == LinearOutput::kStore || output == LinearOutput::kRelu) {
              ref = p;
              if (output == LinearOutput::kRelu) ops::Relu(&ref);
              out = Poisoned({t, n});
            } else if (output == LinearOutput::kAddTo) {
              ref = residual.Clone();
              ops::Add(ref, p, &ref);
              out = residual.Clone();
            } else {
              ref = Poisoned({t, n / 2});
              ops::SiluMulFused(p, &ref);
              out = Poisoned({t, n / 2});
            }
            const Tensor x_before = x.Clone();
            ops::LinearFused(x, w, bias, ops::LinearFusion{norm ? norm_w : Tensor(), 1e-5f, output}, &out);
            EXPECT_EQ(Values(out), Values(ref));
            EXPECT_EQ(Values(x), Values(x_before)) << "x is read only";
          }
        }
      }
    }
  }
  EXPECT_FALSE(ops::LinearFusedIsOneKernel(Random({1, 64}))) << "the CPU composes";
}

// One GEMM over stacked weights equals the separate GEMMs, column block by column block (the
// engine relies on it for exact CPU parity).
TEST(FusedOps, StackedLinearEqualsSeparateLinears) {
  const int64_t t = 3, k = 40;
  const Tensor x = Random({t, k}), wq = Random({24, k}), wk = Random({8, k}), bq = Random({24}), bk = Random({8});
  Tensor w = Tensor::Empty({32, k}, DType::kF32), b = Tensor::Empty({32}, DType::kF32);
  std::memcpy(w.data<float>(), wq.data<float>(), wq.nbytes());
  std::memcpy(w.data<float>() + wq.numel(), wk.data<float>(), wk.nbytes());
  std::memcpy(b.data<float>(), bq.data<float>(), bq.nbytes());
  std::memcpy(b.data<float>() + 24, bk.data<float>(), bk.nbytes());
  Tensor out = Poisoned({t, 32}), q = Poisoned({t, 24}), kk = Poisoned({t, 8});
  ops::Linear(x, w, b, &out);
  ops::Linear(x, wq, bq, &q);
  ops::Linear(x, wk, bk, &kk);
  EXPECT_EQ(Values(Cols(out, 0, 24)), Values(q));
  EXPECT_EQ(Values(Cols(out, 24, 32)), Values(kk));
}

}  // namespace
}  // namespace chai
