// The fused decode ops on CUDA (AddLayerNorm, AddRmsNorm, SiluMulFused, SplitQkvRotary,
// SplitQkvRotaryAppend) against the CPU reference on fresh random inputs (fp32, fp16, bf16; odd
// row counts; NaN-poisoned outputs), and against the unfused CUDA ops they replace: those must
// agree bit for bit (the fused kernels share their arithmetic), so the engine's GPU numerics do
// not move either. LinearFused has its own test (linear_fused_gpu_test.cc).
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
#include "tests/gpu/paged_pool_checks.h"
#include "tests/support/paged_append_case.h"

namespace chai {
namespace {

using gpu_test::ExpectPoolClose;
using gpu_test::GpuTest;
using gpu_test::Ints;
using gpu_test::Operand;
using gpu_test::Poisoned;
using gpu_test::Random;
using gpu_test::RelErr;
using gpu_test::SameBytes;
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
          const BatchLayout host_batch = test::HostLayout(c), batch = test::LayoutOn(c, Device::kCuda);
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

}  // namespace
}  // namespace chai
