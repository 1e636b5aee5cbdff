// ops::LinearAddNorm on CUDA: the decode GEMV whose last CTA adds its output into the residual
// stream and normalises it (kernels/cuda/gemv_add_norm.cuh), against the composition it replaces,
// ops::Linear then ops::AddRmsNorm / AddLayerNorm on the same device (themselves tested against
// the CPU reference in ops_gpu_test and linear_fused_gpu_test): out, the residual and the normed
// output equal bit for bit. Several calls in a row (the grid counter is reset for the next launch)
// and inside a CUDA graph.
#include <cstdint>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/ops.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/gpu/graph_capture.h"

namespace chai {
namespace {

using gpu_test::GpuTest;
using gpu_test::Operand;
using gpu_test::Poisoned;
using gpu_test::Random;

class LinearAddNormGpu : public GpuTest {};

// One sublayer end's operands: x [T, K], the projection [N, K] (+ bias) and the norm after it.
struct Case {
  int64_t t, k, n;
  bool rms, bias, in_place;
  DType dtype;
  std::string Name() const {
    return std::string(DTypeName(dtype)) + " T=" + std::to_string(t) + " K=" + std::to_string(k) +
           " N=" + std::to_string(n) + (rms ? " rms" : " layernorm") + (bias ? " bias" : "") +
           (in_place ? " in place" : "");
  }
};

struct Operands {
  Operand x, w, b, norm_w, norm_b, residual;
};

Operands MakeOperands(const Case& c) {
  Operands o;
  o.x = Random({c.t, c.k}, c.dtype, 1.f);
  o.w = Random({c.n, c.k}, c.dtype, 1.f / 32);
  if (c.bias) o.b = Random({c.n}, c.dtype, 0.5f);
  o.norm_w = Random({c.n}, c.dtype, 0.2f, 1.f);
  o.norm_b = Random({c.n}, c.dtype, 0.2f);
  o.residual = Random({c.t, c.n}, c.dtype, 2.f);
  return o;
}

// Linear then the add + norm kernel: the composition LinearAddNorm stands for.
void Composition(const Case& c, const Operands& o, Tensor* out, Tensor* residual, Tensor* normed) {
  ops::Linear(o.x.dev, o.w.dev, o.b.dev, out);
  if (c.rms) {
    ops::AddRmsNorm(residual, *out, o.norm_w.dev, 1e-6f, normed);
  } else {
    ops::AddLayerNorm(residual, *out, o.norm_w.dev, o.norm_b.dev, 1e-5f, normed);
  }
}

void Fused(const Case& c, const Operands& o, Tensor* out, Tensor* residual, Tensor* normed) {
  ops::LinearAddNorm(o.x.dev, o.w.dev, o.b.dev, out, residual, o.norm_w.dev, c.rms ? Tensor() : o.norm_b.dev,
                     c.rms ? 1e-6f : 1e-5f, c.rms, normed);
}

// LLaMA-7B's o (4096 -> 4096) and down (11008 -> 4096) shapes, OPT-66B's TP = 1 width (9216),
// a narrow N that splits K over CTAs (the tail then follows each row block's last split), and a
// tiny one; T from 1 to 8; RMSNorm and LayerNorm (with biases), in place (post-LN) or not. Three
// calls in a row, each on the residual the previous left: the same bits as the composition's.
TEST_F(LinearAddNormGpu, EqualsLinearThenAddNormBitForBit) {
  const int64_t shapes[][2] = {{4096, 4096}, {11008, 4096}, {1024, 9216}, {2048, 512}, {256, 64}};
  int cases = 0;
  for (DType dtype : {DType::kF16, DType::kBF16}) {
    for (const auto& [k, n] : shapes) {
      for (int64_t t : {1, 3, 8}) {
        for (bool rms : {true, false}) {
          const Case c{t, k, n, rms, /*bias=*/!rms, /*in_place=*/!rms && t == 3, dtype};
          SCOPED_TRACE(c.Name());
          const Operands o = MakeOperands(c);
          Tensor out_ref = Poisoned({t, n}, dtype), out = Poisoned({t, n}, dtype);
          Tensor res_ref = o.residual.dev.Clone(), res = o.residual.dev.Clone();
          ASSERT_TRUE(cuda::LinearAddNormIsOneKernel(o.x.dev, o.w.dev, o.b.dev, out, res, o.norm_w.dev,
                                                     rms ? Tensor() : o.norm_b.dev, rms, res))
              << "the case must run the one kernel, not the composition";
          for (int call = 0; call < 3; ++call) {
            Tensor normed_ref = c.in_place ? res_ref : Poisoned({t, n}, dtype);
            Tensor normed = c.in_place ? res : Poisoned({t, n}, dtype);
            Composition(c, o, &out_ref, &res_ref, &normed_ref);
            Fused(c, o, &out, &res, &normed);
            EXPECT_EQ(out.ToFloats(), out_ref.ToFloats()) << "call " << call << ": the GEMV's output";
            EXPECT_EQ(res.ToFloats(), res_ref.ToFloats()) << "call " << call << ": the residual stream";
            EXPECT_EQ(normed.ToFloats(), normed_ref.ToFloats()) << "call " << call << ": the normed output";
          }
          // Not vacuous: the residual moved and the norm wrote finite values.
          EXPECT_NE(res.ToFloats(), o.residual.dev.ToFloats());
          ++cases;
        }
      }
    }
  }
  EXPECT_EQ(cases, 2 * 5 * 3 * 2);
}

// Where the one kernel does not apply the op is the composition: fp32, a width that is not whole
// 16-byte vectors, rows wider than the GEMV's CTA can normalise in the norm kernel's order, 9 rows.
TEST_F(LinearAddNormGpu, FallsBackToTheCompositionWhereTheKernelDoesNotApply) {
  const struct {
    int64_t t, k, n;
    DType dtype;
  } cases[] = {{1, 256, 64, DType::kF32}, {2, 256, 60, DType::kF16}, {1, 64, 16384, DType::kBF16},
               {9, 256, 64, DType::kF16}};
  for (const auto& s : cases) {
    const Case c{s.t, s.k, s.n, true, false, false, s.dtype};
    SCOPED_TRACE(c.Name());
    const Operands o = MakeOperands(c);
    Tensor out_ref = Poisoned({c.t, c.n}, c.dtype), out = Poisoned({c.t, c.n}, c.dtype);
    Tensor res_ref = o.residual.dev.Clone(), res = o.residual.dev.Clone();
    Tensor normed_ref = Poisoned({c.t, c.n}, c.dtype), normed = Poisoned({c.t, c.n}, c.dtype);
    EXPECT_FALSE(cuda::LinearAddNormIsOneKernel(o.x.dev, o.w.dev, o.b.dev, out, res, o.norm_w.dev, Tensor(), true,
                                                normed));
    Composition(c, o, &out_ref, &res_ref, &normed_ref);
    Fused(c, o, &out, &res, &normed);
    EXPECT_EQ(res.ToFloats(), res_ref.ToFloats());
    EXPECT_EQ(normed.ToFloats(), normed_ref.ToFloats());
  }
}

// Captured into a graph, as the engine records a decode step, and replayed twice from the same
// residual: the eager results bit for bit (the grid counter is left at 0 by every launch).
TEST_F(LinearAddNormGpu, CapturesIntoAGraph) {
  for (DType dtype : {DType::kF16, DType::kBF16}) {
    const Case c{1, 4096, 4096, true, false, false, dtype};
    SCOPED_TRACE(c.Name());
    const Operands o = MakeOperands(c);
    Tensor out = Poisoned({1, 4096}, dtype), res = o.residual.dev.Clone(), normed = Poisoned({1, 4096}, dtype);
    auto step = [&] {
      CopyTensor(o.residual.dev, &res);
      Fused(c, o, &out, &res, &normed);
      Fused(c, o, &out, &res, &normed);  // twice: the second launch sees the counter the first reset
    };
    step();
    const std::vector<float> eager_res = res.ToFloats(), eager_normed = normed.ToFloats();
    normed = Poisoned({1, 4096}, dtype);
    ASSERT_NO_FATAL_FAILURE(gpu_test::CaptureAndLaunch(step, 2));
    EXPECT_EQ(res.ToFloats(), eager_res);
    EXPECT_EQ(normed.ToFloats(), eager_normed);
  }
}

}  // namespace
}  // namespace chai
