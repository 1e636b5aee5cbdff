// The fused decode ops on CUDA (AddLayerNorm, AddRmsNorm, SiluMulFused, SplitQkvRotary,
// SplitQkvRotaryAppend, LinearFused) against
// the CPU reference on fresh random inputs (fp32, fp16, bf16; odd row counts; NaN-poisoned
// outputs), and against the unfused CUDA ops they replace: those must agree bit for bit (the
// fused kernels share their arithmetic), so the engine's GPU numerics do not move either; the
// one exception is LinearFused's folded RMSNorm, which rounds elsewhere (see its test).
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/ops.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/gpu/graph_capture.h"
#include "tests/support/paged_append_case.h"

namespace chai {
namespace {

using gpu_test::GpuTest;
using gpu_test::Ints;
using gpu_test::Operand;
using gpu_test::Poisoned;
using gpu_test::Random;
using gpu_test::RelErr;
using gpu_test::Tolerance;

class FusedOpsGpu : public GpuTest {};

// Host fp32 tensors side by side as columns of one tensor, then in `dtype` on the device: the
// stacked GEMM outputs built from separate operands (whose values are exact in `dtype`).
Operand StackColumns(const std::vector<const Operand*>& parts, DType dtype) {
  const int64_t rows = parts[0]->ref.dim(0);
  int64_t width = 0;
  for (const Operand* p : parts) width += p->ref.dim(1);
  Tensor host = Tensor::Empty({rows, width}, DType::kF32);
  for (int64_t r = 0; r < rows; ++r) {
    float* dst = host.data<float>() + r * width;
    for (const Operand* p : parts) {
      const int64_t w = p->ref.dim(1);
      std::copy_n(p->ref.data<float>() + r * w, w, dst);
      dst += w;
    }
  }
  return Operand{host.Cast(dtype).To(Device::kCuda), host};
}

// ---- AddLayerNorm / AddRmsNorm -------------------------------------------------------------

TEST_F(FusedOpsGpu, AddNormMatchesReferenceAndUnfusedKernels) {
  for (DType dtype : gpu_test::FloatTypes()) {
    for (int64_t t : {1, 3, 17, 129}) {
      for (int64_t c : {64, 96, 127, 4096, 5120}) {
        // A residual stream with a mean far from zero, and a sublayer output to add to it.
        const Operand x = Random({t, c}, dtype, 3.f, 2.f), y = Random({t, c}, dtype), w = Random({c}, dtype);
        const Operand b = Random({c}, dtype);
        for (int variant = 0; variant < 3; ++variant) {  // LayerNorm with bias, without, RMSNorm
          const bool rms = variant == 2;
          const Tensor bias_dev = variant == 0 ? b.dev : Tensor(), bias_ref = variant == 0 ? b.ref : Tensor();
          for (bool in_place : {false, true}) {
            SCOPED_TRACE(::testing::Message() << (rms ? "AddRmsNorm" : "AddLayerNorm") << " T=" << t << " C=" << c
                                              << " variant=" << variant << " in_place=" << in_place);
            Tensor xd = x.dev.Clone();
            Tensor out = in_place ? xd : Poisoned({t, c}, dtype);
            Tensor xr = x.ref.Clone();
            Tensor ref = in_place ? xr : Poisoned({t, c}, DType::kF32, Device::kCpu);
            // Unfused on the device: Add, then the norm into a fresh buffer.
            Tensor xu = x.dev.Clone(), unfused = Poisoned({t, c}, dtype);
            ops::Add(xu, y.dev, &xu);
            if (rms) {
              ops::AddRmsNorm(&xd, y.dev, w.dev, 1e-6f, &out);
              ops::AddRmsNorm(&xr, y.ref, w.ref, 1e-6f, &ref);
              ops::RmsNorm(xu, w.dev, 1e-6f, &unfused);
            } else {
              ops::AddLayerNorm(&xd, y.dev, w.dev, bias_dev, 1e-5f, &out);
              ops::AddLayerNorm(&xr, y.ref, w.ref, bias_ref, 1e-5f, &ref);
              ops::LayerNorm(xu, w.dev, bias_dev, 1e-5f, &unfused);
            }
            EXPECT_CLOSE(out, ref, dtype, "normalised rows");
            EXPECT_EQ(out.ToFloats(), unfused.ToFloats()) << "differs from Add + norm on the device";
            if (!in_place) {
              EXPECT_CLOSE(xd, xr, dtype, "residual sum");
              EXPECT_EQ(xd.ToFloats(), xu.ToFloats()) << "residual differs from Add on the device";
            }
          }
        }
      }
    }
  }
}

// Rows of a larger buffer at an odd element offset take the scalar path.
TEST_F(FusedOpsGpu, AddNormOnUnalignedViews) {
  for (DType dtype : gpu_test::FloatTypes()) {
    const int64_t t = 5, c = 33;
    const Operand x = Random({t + 1, c}, dtype, 2.f, 1.f), y = Random({t + 1, c}, dtype), w = Random({c}, dtype);
    const Operand b = Random({c}, dtype);
    Tensor xd = x.dev.Clone().Rows(1, t + 1);
    Tensor out_full = Poisoned({t + 1, c}, dtype);
    Tensor out = out_full.Rows(1, t + 1);
    ops::AddLayerNorm(&xd, y.dev.Rows(1, t + 1), w.dev, b.dev, 1e-5f, &out);
    Tensor xr = x.ref.Clone().Rows(1, t + 1), ref = Poisoned({t, c}, DType::kF32, Device::kCpu);
    ops::AddLayerNorm(&xr, y.ref.Rows(1, t + 1), w.ref, b.ref, 1e-5f, &ref);
    EXPECT_CLOSE(out, ref, dtype, "AddLayerNorm view");
    EXPECT_CLOSE(xd, xr, dtype, "AddLayerNorm view residual");
  }
}

// ---- SiluMulFused --------------------------------------------------------------------------

TEST_F(FusedOpsGpu, SiluMulFusedMatchesReferenceAndSiluMul) {
  for (DType dtype : gpu_test::FloatTypes()) {
    for (int64_t t : {1, 3, 17, 129}) {
      for (int64_t f : {1, 11, 64, 11008}) {
        const Operand g = Random({t, f}, dtype, 2.f), u = Random({t, f}, dtype);
        const Operand gu = StackColumns({&g, &u}, dtype);
        Tensor out = Poisoned({t, f}, dtype), unfused = Poisoned({t, f}, dtype);
        ops::SiluMulFused(gu.dev, &out);
        ops::SiluMul(g.dev, u.dev, &unfused);
        Tensor ref = Poisoned({t, f}, DType::kF32, Device::kCpu);
        ops::SiluMulFused(gu.ref, &ref);
        EXPECT_CLOSE(out, ref, dtype, "SiluMulFused T=" << t << " F=" << f);
        EXPECT_EQ(out.ToFloats(), unfused.ToFloats()) << DTypeName(dtype) << " T=" << t << " F=" << f;
      }
    }
    // An odd element offset: the scalar path.
    const Operand big = Random({1 + 3 * 80}, dtype, 2.f);
    const Tensor view = big.dev.Rows(1, 1 + 3 * 80).Reshape({3, 80});
    Tensor out = Poisoned({3, 40}, dtype), ref = Poisoned({3, 40}, DType::kF32, Device::kCpu);
    ops::SiluMulFused(view, &out);
    ops::SiluMulFused(big.ref.Rows(1, 1 + 3 * 80).Reshape({3, 80}), &ref);
    EXPECT_CLOSE(out, ref, dtype, "SiluMulFused unaligned view");
  }
}

// ---- SplitQkvRotary ------------------------------------------------------------------------

TEST_F(FusedOpsGpu, SplitQkvRotaryMatchesReferenceAndRotary) {
  std::uniform_int_distribution<int32_t> pos_dist(0, 100000);
  struct Heads {
    int heads, kv_heads, head_dim;
  };
  // LLaMA-7B (MHA), GQA, small and odd head sizes (6: the scalar path).
  const Heads shapes[] = {{32, 32, 128}, {32, 8, 128}, {4, 2, 64}, {3, 1, 96}, {5, 5, 6}, {2, 1, 8}};
  for (DType dtype : gpu_test::FloatTypes()) {
    for (Heads hs : shapes) {
      const int64_t qw = int64_t{hs.heads} * hs.head_dim, kvw = int64_t{hs.kv_heads} * hs.head_dim;
      for (int64_t t : {1, 3, 17, 129}) {
        const Operand q = Random({t, qw}, dtype), k = Random({t, kvw}, dtype), v = Random({t, kvw}, dtype);
        const Operand qkv = StackColumns({&q, &k, &v}, dtype);
        std::vector<int32_t> positions(t);
        for (auto& p : positions) p = pos_dist(gpu_test::Rng());
        positions[0] = 0;
        auto [pos_host, pos_dev] = Ints(positions);
        for (bool rotary : {true, false}) {
          for (float theta : {10000.f, 500000.f}) {
            if (!rotary && theta != 10000.f) continue;
            SCOPED_TRACE(::testing::Message()
                         << DTypeName(dtype) << " heads=" << hs.heads << " kv=" << hs.kv_heads << " d=" << hs.head_dim
                         << " T=" << t << " rotary=" << rotary << " theta=" << theta);
            Tensor qo = Poisoned({t, qw}, dtype), ko = Poisoned({t, kvw}, dtype), vo = Poisoned({t, kvw}, dtype);
            ops::SplitQkvRotary(qkv.dev, pos_dev, hs.heads, hs.kv_heads, hs.head_dim, theta, rotary, &qo, &ko, &vo);
            Tensor qr = Poisoned({t, qw}, DType::kF32, Device::kCpu),
                   kr = Poisoned({t, kvw}, DType::kF32, Device::kCpu);
            Tensor vr = Poisoned({t, kvw}, DType::kF32, Device::kCpu);
            ops::SplitQkvRotary(qkv.ref, pos_host, hs.heads, hs.kv_heads, hs.head_dim, theta, rotary, &qr, &kr, &vr);
            EXPECT_CLOSE(qo, qr, dtype, "q");
            EXPECT_CLOSE(ko, kr, dtype, "k");
            EXPECT_EQ(RelErr(vo, vr), 0.0) << "v is a copy";
            // The unfused path: separate tensors, Rotary in place.
            Tensor qu = q.dev.Clone(), ku = k.dev.Clone();
            if (rotary) {
              ops::Rotary(&qu, pos_dev, hs.heads, hs.head_dim, theta);
              ops::Rotary(&ku, pos_dev, hs.kv_heads, hs.head_dim, theta);
            }
            EXPECT_EQ(qo.ToFloats(), qu.ToFloats()) << "q differs from Rotary";
            EXPECT_EQ(ko.ToFloats(), ku.ToFloats()) << "k differs from Rotary";
          }
        }
      }
    }
  }
}

// qkv rows at an odd element offset (scalar path), outputs views too.
TEST_F(FusedOpsGpu, SplitQkvRotaryOnUnalignedViews) {
  for (DType dtype : gpu_test::FloatTypes()) {
    const int heads = 4, kv_heads = 2, d = 16;
    const int64_t t = 3, qw = heads * d, kvw = kv_heads * d, width = qw + 2 * kvw;
    const Operand flat = Random({1 + t * width}, dtype);
    const Tensor qkv = flat.dev.Rows(1, 1 + t * width).Reshape({t, width});
    auto [pos_host, pos_dev] = Ints({5, 700, 90000});
    Tensor q_full = Poisoned({t + 1, qw}, dtype), q = q_full.Rows(1, t + 1);
    Tensor k = Poisoned({t, kvw}, dtype), v = Poisoned({t, kvw}, dtype);
    ops::SplitQkvRotary(qkv, pos_dev, heads, kv_heads, d, 10000.f, true, &q, &k, &v);
    Tensor qr = Poisoned({t, qw}, DType::kF32, Device::kCpu), kr = Poisoned({t, kvw}, DType::kF32, Device::kCpu);
    Tensor vr = Poisoned({t, kvw}, DType::kF32, Device::kCpu);
    ops::SplitQkvRotary(flat.ref.Rows(1, 1 + t * width).Reshape({t, width}), pos_host, heads, kv_heads, d, 10000.f,
                        true, &qr, &kr, &vr);
    EXPECT_CLOSE(q, qr, dtype, "q view");
    EXPECT_CLOSE(k, kr, dtype, "k view");
    EXPECT_EQ(RelErr(v, vr), 0.0) << DTypeName(dtype);
  }
}

// ---- SplitQkvRotaryAppend -----------------------------------------------------------------

// A pool after the op against the reference's: the same slots written (the poison, NaN, left
// everywhere else) and the written values within the dtype's tolerance.
void ExpectPoolClose(const Tensor& pool, const Tensor& ref, DType dtype) {
  const std::vector<float> out = pool.ToFloats(), want = ref.ToFloats();
  ASSERT_EQ(out.size(), want.size());
  std::vector<float> out_written, want_written;
  int64_t mismatched = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    if (std::isnan(want[i]) != std::isnan(out[i])) {
      ++mismatched;
    } else if (!std::isnan(want[i])) {
      out_written.push_back(out[i]);
      want_written.push_back(want[i]);
    }
  }
  EXPECT_EQ(mismatched, 0) << DTypeName(dtype) << ": elements written by only one of op and reference";
  EXPECT_FALSE(want_written.empty()) << "the reference wrote nothing";
  EXPECT_CLOSE(out_written, want_written, dtype, "pool");
}

// Byte-for-byte equality of two device tensors (NaN poison included).
bool SameBytes(const Tensor& a, const Tensor& b) {
  const Tensor ha = a.To(Device::kCpu), hb = b.To(Device::kCpu);
  return ha.nbytes() == hb.nbytes() && std::memcmp(ha.raw(), hb.raw(), ha.nbytes()) == 0;
}

// The fused kernel against the CPU reference (SplitQkvRotary then PagedAppend) and against the
// two CUDA kernels it replaces, which it must match bit for bit (q, the kept k and v, the whole
// pool): decode, prefill and mixed steps; rows by slot or by sequence; CHAI tables whose dropped
// K heads have no blocks; with and without rotary; k and v kept or not.
TEST_F(FusedOpsGpu, SplitQkvRotaryAppendMatchesReferenceAndUnfusedOps) {
  struct Heads {
    int heads, kv_heads, head_dim;
  };
  // LLaMA-7B (MHA), GQA, small and odd head sizes (6: the scalar path).
  const Heads shapes[] = {{32, 32, 128}, {32, 8, 128}, {4, 2, 64}, {3, 1, 96}, {5, 5, 6}, {2, 1, 8}};
  auto dev = [](const Tensor& t) { return t.defined() ? t.To(Device::kCuda) : Tensor(); };
  for (DType dtype : gpu_test::FloatTypes()) {
    for (Heads hs : shapes) {
      const int64_t qw = int64_t{hs.heads} * hs.head_dim, kvw = int64_t{hs.kv_heads} * hs.head_dim;
      for (const test::StepShape& shape : test::PagedAppendShapes()) {
        for (int variant = 0; variant < 4; ++variant) {
          const bool use_slots = variant & 1, drop_k = variant & 2;
          const test::PagedAppendCase c =
              test::MakePagedAppendCase(gpu_test::Rng(), hs.kv_heads, 16, shape.new_tokens, shape.lens, use_slots,
                                        drop_k);
          const int64_t t = c.rows;
          const Operand qkv = Random({t, qw + 2 * kvw}, dtype);
          BatchLayout host_batch;
          host_batch.q_start = c.q_start;
          host_batch.seq_lens = c.seq_lens;
          host_batch.slots = c.slots;
          host_batch.num_seqs = c.num_seqs;
          host_batch.max_new_tokens = c.max_new;
          host_batch.max_seq_len = c.max_len;
          BatchLayout batch = host_batch;
          batch.q_start = dev(c.q_start);
          batch.seq_lens = dev(c.seq_lens);
          batch.slots = dev(c.slots);
          const Tensor tables = dev(c.tables), positions = dev(c.positions);
          const std::vector<int64_t> pool_shape = {c.num_blocks, c.block_size, hs.head_dim};
          for (bool rotary : {true, false}) {
            for (bool keep : {true, false}) {
              SCOPED_TRACE(::testing::Message()
                           << DTypeName(dtype) << " heads=" << hs.heads << " kv=" << hs.kv_heads << " d=" << hs.head_dim
                           << " T=" << t << " seqs=" << c.num_seqs << " slots=" << use_slots << " drop_k=" << drop_k
                           << " rotary=" << rotary << " keep=" << keep);
              // The reference on the host.
              Tensor qr = Poisoned({t, qw}, DType::kF32, Device::kCpu);
              Tensor kr = Poisoned({t, kvw}, DType::kF32, Device::kCpu);
              Tensor vr = Poisoned({t, kvw}, DType::kF32, Device::kCpu);
              Tensor pool_r = Poisoned(pool_shape, DType::kF32, Device::kCpu);
              ops::SplitQkvRotaryAppend(qkv.ref, c.positions, hs.heads, hs.kv_heads, hs.head_dim, 10000.f, rotary,
                                        PagedKv{pool_r, c.tables, c.block_size, hs.kv_heads, c.max_blocks}, host_batch,
                                        &qr, &kr, &vr);
              // The fused kernel.
              Tensor q = Poisoned({t, qw}, dtype), k = Poisoned({t, kvw}, dtype), v = Poisoned({t, kvw}, dtype);
              Tensor pool = Poisoned(pool_shape, dtype);
              ops::SplitQkvRotaryAppend(qkv.dev, positions, hs.heads, hs.kv_heads, hs.head_dim, 10000.f, rotary,
                                        PagedKv{pool, tables, c.block_size, hs.kv_heads, c.max_blocks}, batch, &q,
                                        keep ? &k : nullptr, keep ? &v : nullptr);
              // The two kernels it replaces.
              Tensor qu = Poisoned({t, qw}, dtype), ku = Poisoned({t, kvw}, dtype), vu = Poisoned({t, kvw}, dtype);
              Tensor pool_u = Poisoned(pool_shape, dtype);
              ops::SplitQkvRotary(qkv.dev, positions, hs.heads, hs.kv_heads, hs.head_dim, 10000.f, rotary, &qu, &ku,
                                  &vu);
              ops::PagedAppend(ku, vu, PagedKv{pool_u, tables, c.block_size, hs.kv_heads, c.max_blocks}, batch);

              EXPECT_CLOSE(q, qr, dtype, "q");
              ExpectPoolClose(pool, pool_r, dtype);
              EXPECT_TRUE(SameBytes(q, qu)) << "q differs from SplitQkvRotary";
              EXPECT_TRUE(SameBytes(pool, pool_u)) << "pool differs from SplitQkvRotary + PagedAppend";
              if (keep) {
                EXPECT_CLOSE(k, kr, dtype, "k");
                EXPECT_EQ(RelErr(v, vr), 0.0) << "v is a copy";
                EXPECT_TRUE(SameBytes(k, ku)) << "k differs from SplitQkvRotary";
                EXPECT_TRUE(SameBytes(v, vu)) << "v differs from SplitQkvRotary";
              }
            }
          }
        }
      }
    }
  }
}

// ---- LinearFused ---------------------------------------------------------------------------

// The fusions of LinearFused, named for messages.
struct Fusion {
  bool norm;
  ops::LinearOutput output;
};
const Fusion kFusions[] = {{false, ops::LinearOutput::kStore},   {true, ops::LinearOutput::kStore},
                           {false, ops::LinearOutput::kAddTo},   {true, ops::LinearOutput::kAddTo},
                           {false, ops::LinearOutput::kSiluMul}, {true, ops::LinearOutput::kSiluMul}};
const char* OutputName(ops::LinearOutput o) {
  return o == ops::LinearOutput::kStore ? "store" : o == ops::LinearOutput::kAddTo ? "add-to" : "silu-mul";
}

// Where the norm is rounded. The unfused ops (and LinearFused's composition) store RmsNorm(x) in
// the dtype before the product; the fused GEMV stores T(x * w_norm) instead and scales the
// product's fp32 sums by rsqrt(mean(x^2) + eps) (kernels/cuda/gemv_fusion.cuh).
enum class NormRounding { kNormalised, kScaledInput };

// p = Linear(x * norm_w rounded to `stored`) * rsqrt(mean(x^2) + eps) + bias, on host fp32
// tensors (the fused GEMV's definition, NormRounding::kScaledInput).
Tensor ScaledInputLinear(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& norm_w, float eps,
                         DType stored) {
  const int64_t t = x.dim(0), k = x.dim(1), n = w.dim(0);
  Tensor scaled = Tensor::Empty({t, k}, DType::kF32);
  std::vector<float> inv(t);
  for (int64_t r = 0; r < t; ++r) {
    double squares = 0;
    for (int64_t c = 0; c < k; ++c) {
      const float v = x.data<float>()[r * k + c];
      squares += double{v} * v;
      scaled.data<float>()[r * k + c] = v * norm_w.data<float>()[c];
    }
    inv[r] = static_cast<float>(1.0 / std::sqrt(squares / k + eps));
  }
  if (stored != DType::kF32) scaled = scaled.Cast(stored).Cast(DType::kF32);
  Tensor p = Tensor::Empty({t, n}, DType::kF32);
  ops::Linear(scaled, w, Tensor(), &p);
  for (int64_t r = 0; r < t; ++r) {
    for (int64_t c = 0; c < n; ++c) {
      p.data<float>()[r * n + c] = p.data<float>()[r * n + c] * inv[r] + (bias.defined() ? bias.data<float>()[c] : 0.f);
    }
  }
  return p;
}

// The composition that defines LinearFused (ops.h) with the unfused ops on x's device: the CPU
// reference on host operands, the unfused CUDA kernels on device ones. *out holds the residual
// for kAddTo. `stored`: the dtype the device composition stores its intermediate tensors in (the
// normalised rows or the scaled input, the product); the CPU reference rounds them to it too, so
// that it computes what the op defines. (Without that, bf16 rounding alone moves the 4 outputs of
// an N = 8 SiLU case past 1e-2 in about 5% of draws, on the unfused kernels as much as on the
// fused one.) `norm`: where the norm rounds (kScaledInput only on host operands).
void ComposeLinearFused(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& norm_w, float eps,
                        ops::LinearOutput output, DType stored, Tensor* out,
                        NormRounding norm = NormRounding::kNormalised) {
  auto round = [&](Tensor* t) {
    if (t->device() == Device::kCpu && stored != DType::kF32) *t = t->Cast(stored).Cast(DType::kF32);
  };
  Tensor p;
  if (norm_w.defined() && norm == NormRounding::kScaledInput) {
    p = ScaledInputLinear(x, w, bias, norm_w, eps, stored);
  } else {
    Tensor in = x;
    if (norm_w.defined()) {
      in = Tensor::Empty(x.shape(), x.dtype(), x.device());
      ops::RmsNorm(x, norm_w, eps, &in);
      round(&in);
    }
    p = Tensor::Empty({x.dim(0), w.dim(0)}, x.dtype(), x.device());
    ops::Linear(in, w, bias, &p);
  }
  if (output == ops::LinearOutput::kStore) {
    CopyTensor(p, out);
    return;
  }
  round(&p);
  if (output == ops::LinearOutput::kAddTo) {
    ops::Add(*out, p, out);
  } else {
    ops::SiluMulFused(p, out);
  }
}

// Every fusion (RMSNorm folded in or not; store, residual add in place, SiLU of gate | up) at
// T in {1, 2, 3, 5, 8} (one GEMV kernel) and 13 (the composition), K in {4096, 11008, 4104
// (K % 64 != 0: the K tail), 256 (less than a warp iteration per warp)}, N in {4096, 12288
// (the wide configuration), 24, 8 (split-K, partial row tiles)}, with and without bias, against
// the CPU reference within the dtype's tolerance (rounding where the op being checked rounds:
// NormRounding); two calls agree bit for bit. Against the unfused CUDA kernels at T <= 8: the
// residual and SiLU epilogues give their values bit for bit (the same GEMV sums, then the same
// rounding steps). The folded norm rounds elsewhere than RmsNorm + Linear, so there DESIGN.md's
// rule for a path that rounds differently applies: against the unrounded fp32 composition, its
// error is at most max(tolerance, 1.5 x the unfused kernels' error); the count of outputs that
// differ from the unfused kernels is printed.
TEST_F(FusedOpsGpu, LinearFusedMatchesReferenceAndUnfusedKernels) {
  const float eps = 1e-5f;
  for (DType dtype : {DType::kF16, DType::kBF16}) {
    for (int64_t k : {4096, 11008, 4104, 256}) {
      const Operand w_all = gpu_test::FastRandom({12288, k}, dtype, 1.f / std::sqrt(float(k)));
      const Operand norm_w = Random({k}, dtype, 0.2f, 1.f);
      for (int64_t n : {4096, 12288, 24, 8}) {
        const Tensor w_dev = w_all.dev.Rows(0, n), w_ref = w_all.ref.Rows(0, n);
        for (int64_t t : {1, 2, 3, 5, 8, 13}) {
          // x is a residual stream (a mean away from zero); the residual the output adds into too.
          const Operand x = Random({t, k}, dtype, 2.f, 0.5f), b = Random({n}, dtype);
          const Operand res = Random({t, n}, dtype, 2.f, 1.f);
          const bool one_kernel = ops::LinearFusedIsOneKernel(x.dev);
          EXPECT_EQ(one_kernel, t <= 8);
          for (bool with_bias : {false, true}) {
            for (const Fusion& f : kFusions) {
              SCOPED_TRACE(::testing::Message() << DTypeName(dtype) << " T=" << t << " K=" << k << " N=" << n
                                                << " bias=" << with_bias << " norm=" << f.norm
                                                << " output=" << OutputName(f.output));
              const Tensor bias_dev = with_bias ? b.dev : Tensor(), bias_ref = with_bias ? b.ref : Tensor();
              const ops::LinearFusion fusion{f.norm ? norm_w.dev : Tensor(), eps, f.output};
              const int64_t cols = f.output == ops::LinearOutput::kSiluMul ? n / 2 : n;
              auto fresh = [&](Device device) {  // the output operand: the residual, or poisoned
                const DType d = device == Device::kCuda ? dtype : DType::kF32;
                if (f.output != ops::LinearOutput::kAddTo) return Poisoned({t, cols}, d, device);
                return device == Device::kCuda ? res.dev.Clone() : res.ref.Clone();
              };
              Tensor out = fresh(Device::kCuda), again = fresh(Device::kCuda), ref = fresh(Device::kCpu);
              ops::LinearFused(x.dev, w_dev, bias_dev, fusion, &out);
              ops::LinearFused(x.dev, w_dev, bias_dev, fusion, &again);
              ComposeLinearFused(x.ref, w_ref, bias_ref, f.norm ? norm_w.ref : Tensor(), eps, f.output, dtype, &ref,
                                 one_kernel ? NormRounding::kScaledInput : NormRounding::kNormalised);
              EXPECT_CLOSE(out, ref, dtype, "against the CPU reference");
              const std::vector<float> values = out.ToFloats();
              EXPECT_EQ(values, again.ToFloats()) << "two calls differ";
              if (!one_kernel) continue;  // the composition: cuBLASLt's sums need not repeat bit for bit
              Tensor unfused = fresh(Device::kCuda);
              ComposeLinearFused(x.dev, w_dev, bias_dev, f.norm ? norm_w.dev : Tensor(), eps, f.output, dtype,
                                 &unfused);
              const std::vector<float> expected = unfused.ToFloats();
              if (!f.norm) {
                EXPECT_EQ(values, expected) << "differs from the unfused kernels";
                continue;
              }
              Tensor exact = fresh(Device::kCpu);
              ComposeLinearFused(x.ref, w_ref, bias_ref, norm_w.ref, eps, f.output, DType::kF32, &exact);
              const double fused_err = RelErr(out, exact), unfused_err = RelErr(unfused, exact);
              EXPECT_LE(fused_err, std::max(Tolerance(dtype), 1.5 * unfused_err))
                  << "against the fp32 composition, with the unfused kernels at " << unfused_err;
              int64_t differ = 0;
              for (size_t i = 0; i < values.size(); ++i) differ += values[i] != expected[i];
              if (differ > 0) {
                std::printf("LinearFused %s T=%lld K=%lld N=%lld norm %s: %lld of %zu outputs differ from RmsNorm + "
                            "Linear\n",
                            DTypeName(dtype), static_cast<long long>(t), static_cast<long long>(k),
                            static_cast<long long>(n), OutputName(f.output), static_cast<long long>(differ),
                            values.size());
              }
            }
          }
        }
      }
    }
  }
}

// Operands the GEMV does not take (a norm weight or x 2 bytes off 16-byte alignment, fp32) go
// through the composition and stay correct.
TEST_F(FusedOpsGpu, LinearFusedFallsBackOnOperandsTheGemvRejects) {
  const int64_t t = 3, k = 256, n = 40;
  for (DType dtype : gpu_test::FloatTypes()) {
    const Operand w = Random({n, k}, dtype, 1.f / 16), b = Random({n}, dtype), res = Random({t, n}, dtype, 2.f);
    const Operand xf = Random({1 + t * k}, dtype, 2.f), nf = Random({1 + k}, dtype, 0.2f, 1.f);
    for (bool shifted_x : {false, true}) {
      const int64_t xo = shifted_x ? 1 : 0, no = shifted_x ? 0 : 1;
      const Tensor x = xf.dev.Rows(xo, xo + t * k).Reshape({t, k}), norm = nf.dev.Rows(no, no + k);
      const Tensor x_ref = xf.ref.Rows(xo, xo + t * k).Reshape({t, k}), norm_ref = nf.ref.Rows(no, no + k);
      for (const Fusion& f : kFusions) {
        if (!f.norm) continue;
        SCOPED_TRACE(::testing::Message() << DTypeName(dtype) << " shifted x=" << shifted_x << " output="
                                          << OutputName(f.output));
        const int64_t cols = f.output == ops::LinearOutput::kSiluMul ? n / 2 : n;
        const bool add = f.output == ops::LinearOutput::kAddTo;
        Tensor out = add ? res.dev.Clone() : Poisoned({t, cols}, dtype);
        Tensor ref = add ? res.ref.Clone() : Poisoned({t, cols}, DType::kF32, Device::kCpu);
        ops::LinearFused(x, w.dev, b.dev, ops::LinearFusion{norm, 1e-6f, f.output}, &out);
        ComposeLinearFused(x_ref, w.ref, b.ref, norm_ref, 1e-6f, f.output, dtype, &ref);
        EXPECT_CLOSE(out, ref, dtype, "fallback");
      }
    }
  }
  EXPECT_TRUE(ops::LinearFusedIsOneKernel(Random({8, 64}, DType::kF16).dev));
  EXPECT_TRUE(ops::LinearFusedIsOneKernel(Random({1, 64}, DType::kBF16).dev));
  EXPECT_FALSE(ops::LinearFusedIsOneKernel(Random({9, 64}, DType::kF16).dev));
  EXPECT_FALSE(ops::LinearFusedIsOneKernel(Random({2, 64}, DType::kF32).dev));
  EXPECT_FALSE(ops::LinearFusedIsOneKernel(Random({2, 60}, DType::kF16).dev));
}

// ---- CUDA graphs ---------------------------------------------------------------------------

// The fused decode chain of one LLaMA layer's elementwise work captured into a graph and
// replayed gives the eager results (no op synchronises, allocates or leaves CurrentStream()).
TEST_F(FusedOpsGpu, FusedChainCapturesIntoAGraph) {
  for (DType dtype : gpu_test::FloatTypes()) {
    const int64_t t = 2, hidden = 256, heads = 4, d = 64, ffn = 128;
    const Operand x0 = Random({t, hidden}, dtype, 2.f), o = Random({t, hidden}, dtype), w = Random({hidden}, dtype);
    const Operand qkv = Random({t, 3 * heads * d}, dtype), gu = Random({t, 2 * ffn}, dtype);
    auto [pos_host, pos] = Ints({3, 40});
    Tensor x = x0.dev.Clone(), h = Poisoned({t, hidden}, dtype), act = Poisoned({t, ffn}, dtype);
    Tensor q = Poisoned({t, heads * d}, dtype), k = Poisoned({t, heads * d}, dtype),
           v = Poisoned({t, heads * d}, dtype);
    auto step = [&] {
      CopyTensor(x0.dev, &x);
      ops::AddRmsNorm(&x, o.dev, w.dev, 1e-6f, &h);
      ops::SplitQkvRotary(qkv.dev, pos, heads, heads, d, 10000.f, true, &q, &k, &v);
      ops::SiluMulFused(gu.dev, &act);
    };
    step();
    const std::vector<float> eager_h = h.ToFloats(), eager_q = q.ToFloats(), eager_act = act.ToFloats();
    h = Poisoned({t, hidden}, dtype), q = Poisoned({t, heads * d}, dtype), act = Poisoned({t, ffn}, dtype);
    ASSERT_NO_FATAL_FAILURE(gpu_test::CaptureAndLaunch(step, 2));
    EXPECT_EQ(h.ToFloats(), eager_h) << DTypeName(dtype);
    EXPECT_EQ(q.ToFloats(), eager_q) << DTypeName(dtype);
    EXPECT_EQ(act.ToFloats(), eager_act) << DTypeName(dtype);
  }
}

// A LLaMA layer's Linears as the engine runs them at decode (norm prologues, residual epilogues in
// place, the SiLU epilogue; the down projection splits K) captured into a graph and replayed twice
// from the same residual: the eager results bit for bit (no allocation, synchronisation or other
// stream in the fused GEMVs, and the split-K counters are left ready for the next launch).
TEST_F(FusedOpsGpu, FusedLinearsCaptureIntoAGraph) {
  using ops::LinearOutput;
  for (DType dtype : {DType::kF16, DType::kBF16}) {
    for (int64_t t : {1, 3}) {
      const int64_t hidden = 1024, ffn = 2048;
      const Operand x0 = Random({t, hidden}, dtype, 2.f, 0.5f), attn = Random({t, hidden}, dtype);
      const Operand attn_norm = Random({hidden}, dtype, 0.2f, 1.f), mlp_norm = Random({hidden}, dtype, 0.2f, 1.f);
      const Operand w_qkv = Random({3 * hidden, hidden}, dtype, 1.f / 32);
      const Operand w_o = Random({hidden, hidden}, dtype, 1.f / 32);
      const Operand w_gu = Random({2 * ffn, hidden}, dtype, 1.f / 32), w_down = Random({hidden, ffn}, dtype, 1.f / 45);
      Tensor x = x0.dev.Clone(), qkv = Poisoned({t, 3 * hidden}, dtype), act = Poisoned({t, ffn}, dtype);
      auto layer = [&] {
        CopyTensor(x0.dev, &x);
        ops::LinearFused(x, w_qkv.dev, Tensor(), {attn_norm.dev, 1e-6f, LinearOutput::kStore}, &qkv);
        ops::LinearFused(attn.dev, w_o.dev, Tensor(), {Tensor(), 0.f, LinearOutput::kAddTo}, &x);
        ops::LinearFused(x, w_gu.dev, Tensor(), {mlp_norm.dev, 1e-6f, LinearOutput::kSiluMul}, &act);
        ops::LinearFused(act, w_down.dev, Tensor(), {Tensor(), 0.f, LinearOutput::kAddTo}, &x);
      };
      layer();
      const std::vector<float> eager_x = x.ToFloats(), eager_qkv = qkv.ToFloats(), eager_act = act.ToFloats();
      qkv = Poisoned({t, 3 * hidden}, dtype), act = Poisoned({t, ffn}, dtype);
      ASSERT_NO_FATAL_FAILURE(gpu_test::CaptureAndLaunch(layer, 2));
      EXPECT_EQ(x.ToFloats(), eager_x) << DTypeName(dtype) << " T=" << t;
      EXPECT_EQ(qkv.ToFloats(), eager_qkv) << DTypeName(dtype) << " T=" << t;
      EXPECT_EQ(act.ToFloats(), eager_act) << DTypeName(dtype) << " T=" << t;
      // Not vacuous: the layer moved the residual stream.
      EXPECT_NE(eager_x, x0.dev.ToFloats());
    }
  }
}

}  // namespace
}  // namespace chai
