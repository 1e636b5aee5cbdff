// ops::LinearFused on CUDA (the decode GEMV with its fusions: the RMSNorm folded in, the residual
// add and SiLU(gate) * up epilogues) against the CPU reference on fresh random inputs, against
// the unfused CUDA kernels it replaces, and captured into a graph as the engine runs a LLaMA
// layer's Linears at decode.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/ops.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/gpu/graph_capture.h"

namespace chai {
namespace {

using gpu_test::GpuTest;
using gpu_test::Operand;
using gpu_test::Poisoned;
using gpu_test::Random;
using gpu_test::RelErr;
using gpu_test::Tolerance;

class LinearFusedGpu : public GpuTest {};

// The fusions of LinearFused, named for messages.
struct Fusion {
  bool norm;
  ops::LinearOutput output;
};
const Fusion kFusions[] = {{false, ops::LinearOutput::kStore},   {true, ops::LinearOutput::kStore},
                           {false, ops::LinearOutput::kAddTo},   {true, ops::LinearOutput::kAddTo},
                           {false, ops::LinearOutput::kSiluMul}, {true, ops::LinearOutput::kSiluMul},
                           {false, ops::LinearOutput::kRelu}};  // ReLU follows OPT's LayerNorm: never folded
const char* OutputName(ops::LinearOutput o) {
  switch (o) {
    case ops::LinearOutput::kStore:
      return "store";
    case ops::LinearOutput::kAddTo:
      return "add-to";
    case ops::LinearOutput::kSiluMul:
      return "silu-mul";
    case ops::LinearOutput::kRelu:
      return "relu";
  }
  return "?";
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
  if (output == ops::LinearOutput::kRelu) {
    ops::Relu(&p);
    CopyTensor(p, out);
    return;
  }
  if (output == ops::LinearOutput::kAddTo) {
    ops::Add(*out, p, out);
  } else {
    ops::SiluMulFused(p, out);
  }
}

// Every fusion (RMSNorm folded in or not; store, residual add in place, SiLU of gate | up, ReLU) at
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
TEST_F(LinearFusedGpu, LinearFusedMatchesReferenceAndUnfusedKernels) {
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
TEST_F(LinearFusedGpu, LinearFusedFallsBackOnOperandsTheGemvRejects) {
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

// A LLaMA layer's Linears as the engine runs them at decode (norm prologues, residual epilogues in
// place, the SiLU epilogue; the down projection splits K) captured into a graph and replayed twice
// from the same residual: the eager results bit for bit (no allocation, synchronisation or other
// stream in the fused GEMVs, and the split-K counters are left ready for the next launch).
TEST_F(LinearFusedGpu, FusedLinearsCaptureIntoAGraph) {
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
