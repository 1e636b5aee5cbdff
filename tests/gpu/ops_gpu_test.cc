// CUDA ops against the CPU reference ops (kernels/cpu) on the same inputs: every op, in fp32,
// fp16 and bf16, on fresh random inputs of odd and large shapes, with outputs poisoned (NaN)
// before each op. Inputs are drawn in fp32, rounded to the run dtype, and the CPU reference runs
// on exactly those rounded values, so only the CUDA op's own arithmetic is measured.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <tuple>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/internal.h"
#include "kernels/ops.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/gpu/graph_capture.h"

namespace chai {
namespace {

using gpu_test::FastRandom;
using gpu_test::GpuTest;
using gpu_test::Ints;
using gpu_test::Operand;
using gpu_test::Poisoned;
using gpu_test::Random;
using gpu_test::RelErr;
using gpu_test::Tolerance;

class OpsGpu : public GpuTest {};

// ---- Linear (cuBLASLt) ---------------------------------------------------------------------

void CheckLinear(DType dtype, int64_t t, int64_t k, int64_t n, bool with_bias) {
  // Weights scaled by 1/sqrt(K) keep outputs O(1) in fp16 at every K.
  Operand x = Random({t, k}, dtype), w = Random({n, k}, dtype, 1.f / std::sqrt(float(k)));
  Operand b = with_bias ? Random({n}, dtype) : Operand{};
  Tensor out = Poisoned({t, n}, dtype);
  ops::Linear(x.dev, w.dev, b.dev, &out);
  Tensor ref = Poisoned({t, n}, DType::kF32, Device::kCpu);
  ops::Linear(x.ref, w.ref, b.ref, &ref);
  EXPECT_CLOSE(out, ref, dtype, "T=" << t << " K=" << k << " N=" << n << " bias=" << with_bias);
}

TEST_F(OpsGpu, Linear) {
  const std::vector<std::pair<int64_t, int64_t>> kn = {{64, 96}, {127, 127}, {96, 4096}, {4096, 127}, {4096, 4096}};
  for (DType dtype : gpu_test::FloatTypes()) {
    bool with_bias = true;
    for (int64_t t : {1, 3, 17, 129}) {
      for (auto [k, n] : kn) {
        CheckLinear(dtype, t, k, n, with_bias);
        with_bias = !with_bias;
      }
    }
    // Both bias variants of one shape, and a second call of a cached plan on new data.
    CheckLinear(dtype, 5, 64, 64, true);
    CheckLinear(dtype, 5, 64, 64, false);
    CheckLinear(dtype, 5, 64, 64, true);
  }
}

// Views at odd offsets (Rows of a larger tensor) are not 256-byte aligned; the plans are keyed
// by alignment and a misaligned bias falls back from the epilogue to a separate kernel.
TEST_F(OpsGpu, LinearOnUnalignedViews) {
  for (DType dtype : gpu_test::FloatTypes()) {
    for (auto [t, k, n] : {std::tuple<int64_t, int64_t, int64_t>{3, 127, 95}, {17, 96, 64}, {1, 4096, 127}}) {
      Operand x = Random({t + 1, k}, dtype), w = Random({n + 1, k}, dtype, 0.1f), b = Random({n + 1}, dtype);
      Tensor out_full = Poisoned({t + 1, n}, dtype);
      Tensor out = out_full.Rows(1, t + 1);
      const Tensor xv = x.dev.Rows(1, t + 1), wv = w.dev.Rows(1, n + 1), bv = b.dev.Rows(1, n + 1);
      ops::Linear(xv, wv, bv, &out);
      Tensor ref = Poisoned({t, n}, DType::kF32, Device::kCpu);
      ops::Linear(x.ref.Rows(1, t + 1), w.ref.Rows(1, n + 1), b.ref.Rows(1, n + 1), &ref);
      EXPECT_CLOSE(out, ref, dtype, "view T=" << t << " K=" << k << " N=" << n);
    }
  }
}

// ---- Linear at decode: the GEMV kernel (T <= 8, fp16/bf16) ---------------------------------

void CheckDecodeLinear(DType dtype, const Operand& x, const Tensor& w_dev, const Tensor& w_ref, const Tensor& b_dev,
                       const Tensor& b_ref, const char* what) {
  const int64_t t = x.ref.dim(0), k = x.ref.dim(1), n = w_ref.dim(0);
  Tensor out = Poisoned({t, n}, dtype);
  ops::Linear(x.dev, w_dev, b_dev, &out);
  Tensor ref = Poisoned({t, n}, DType::kF32, Device::kCpu);
  ops::Linear(x.ref, w_ref, b_ref, &ref);
  EXPECT_CLOSE(out, ref, dtype, what << " T=" << t << " K=" << k << " N=" << n << " bias=" << b_dev.defined());
}

// Every T in {1, 2, 3, 5, 8} x K in {64, 4096, 11008} x N in {1, 63, 4096, 11008, 12288, 22016,
// 32000} (12288 and 22016: LLaMA-7B's stacked Q|K|V and gate|up), with and without bias, through
// ops::Linear, which routes them all to the GEMV kernel. The weights of one K are the first N rows
// of one [32000, K] draw; x and the bias are fresh for every case.
TEST_F(OpsGpu, LinearDecodeShapesUseGemv) {
  for (DType dtype : {DType::kF16, DType::kBF16}) {
    for (int64_t k : {64, 4096, 11008}) {
      const Operand w = FastRandom({32000, k}, dtype, 1.f / std::sqrt(float(k)));
      for (int64_t n : {1, 63, 4096, 11008, 12288, 22016, 32000}) {
        const Tensor w_dev = w.dev.Rows(0, n), w_ref = w.ref.Rows(0, n);
        for (int64_t t : {1, 2, 3, 5, 8}) {
          const Operand x = Random({t, k}, dtype);
          ASSERT_TRUE(cuda::GemvApplies(x.dev, w_dev)) << DTypeName(dtype) << " T=" << t << " K=" << k;
          CheckDecodeLinear(dtype, x, w_dev, w_ref, Tensor(), Tensor(), "GEMV");
          const Operand b = Random({n}, dtype);
          CheckDecodeLinear(dtype, x, w_dev, w_ref, b.dev, b.ref, "GEMV");
        }
      }
    }
  }
}

// Each launch configuration the benchmark times, called directly, on shapes that take the K tail
// (K / 8 not a multiple of a warp iteration's chunks, or K smaller than one iteration), partial
// row tiles and every T; and two runs on the same inputs agree bit for bit (fixed-order sums).
TEST_F(OpsGpu, GemvVariantsAreCorrectAndDeterministic) {
  const std::vector<std::tuple<int64_t, int64_t, int64_t>> shapes = {
      {1, 8, 1}, {8, 136, 17}, {5, 4104, 100}, {3, 4096, 4096}, {8, 11008, 63}, {2, 1032, 4097}, {7, 264, 33}};
  for (DType dtype : {DType::kF16, DType::kBF16}) {
    for (auto [t, k, n] : shapes) {
      const Operand x = Random({t, k}, dtype), w = Random({n, k}, dtype, 1.f / std::sqrt(float(k)));
      const Operand b = Random({n}, dtype);
      Tensor ref = Poisoned({t, n}, DType::kF32, Device::kCpu);
      ops::Linear(x.ref, w.ref, b.ref, &ref);
      for (int v = 0; v < cuda::GemvNumVariants(); ++v) {
        Tensor out = Poisoned({t, n}, dtype), again = Poisoned({t, n}, dtype);
        cuda::Gemv(x.dev, w.dev, b.dev, &out, v);
        cuda::Gemv(x.dev, w.dev, b.dev, &again, v);
        EXPECT_CLOSE(out, ref, dtype, cuda::GemvVariantName(v) << " T=" << t << " K=" << k << " N=" << n);
        EXPECT_EQ(out.ToFloats(), again.ToFloats()) << "not deterministic: " << cuda::GemvVariantName(v);
      }
    }
  }
}

// Every launch configuration at the LLaMA-7B decode shapes after fusion (stacked Q|K|V 4096 ->
// 12288, gate|up 4096 -> 22016; down 11008 -> 4096 and o 4096 -> 4096), with bias, and with an
// N that is not a multiple of the row tile (one row short of the stacked gate|up); and at OPT-66B's
// Q|K|V and o shards at TP = 4 (9216 -> 6912, 2304 -> 9216), where the default is chosen by shape.
TEST_F(OpsGpu, GemvVariantsAtFusedDecodeShapes) {
  const std::vector<std::tuple<int64_t, int64_t, int64_t>> shapes = {
      {1, 4096, 12288}, {8, 4096, 12288}, {1, 4096, 22016}, {5, 4096, 22015}, {1, 11008, 4096}, {3, 4096, 4096},
      {1, 9216, 6912},  {2, 2304, 9216}};
  for (DType dtype : {DType::kF16, DType::kBF16}) {
    for (auto [t, k, n] : shapes) {
      const Operand x = Random({t, k}, dtype), w = FastRandom({n, k}, dtype, 1.f / std::sqrt(float(k)));
      const Operand b = Random({n}, dtype);
      Tensor ref = Poisoned({t, n}, DType::kF32, Device::kCpu);
      ops::Linear(x.ref, w.ref, b.ref, &ref);
      for (int v = -1; v < cuda::GemvNumVariants(); ++v) {  // -1: the default choice
        Tensor out = Poisoned({t, n}, dtype), again = Poisoned({t, n}, dtype);
        cuda::Gemv(x.dev, w.dev, b.dev, &out, v);
        cuda::Gemv(x.dev, w.dev, b.dev, &again, v);
        EXPECT_CLOSE(out, ref, dtype, cuda::GemvVariantName(v) << " T=" << t << " K=" << k << " N=" << n);
        EXPECT_EQ(out.ToFloats(), again.ToFloats()) << "not deterministic: " << cuda::GemvVariantName(v);
      }
    }
  }
}

// Views: a 16-byte-aligned view that is not 256-byte aligned still takes the GEMV; views 2 bytes
// off alignment (K % 8 == 0 all the same) must fall back to cuBLASLt and stay correct.
TEST_F(OpsGpu, LinearDecodeOnViews) {
  for (DType dtype : {DType::kF16, DType::kBF16}) {
    {
      const int64_t t = 5, k = 4104, n = 300;  // row offset 8208 bytes: 16-byte aligned only
      const Operand x = Random({t + 1, k}, dtype), w = Random({n + 1, k}, dtype, 1.f / 64), b = Random({n + 1}, dtype);
      const Tensor xv = x.dev.Rows(1, t + 1), wv = w.dev.Rows(1, n + 1);
      ASSERT_TRUE(cuda::GemvApplies(xv, wv));
      const Operand xo{xv, x.ref.Rows(1, t + 1)};
      CheckDecodeLinear(dtype, xo, wv, w.ref.Rows(1, n + 1), b.dev.Rows(1, n + 1), b.ref.Rows(1, n + 1),
                        "16-byte-aligned view");
    }
    {
      const int64_t t = 3, k = 4096, n = 257;
      // Flat buffers viewed from element 1: every pointer is 2 bytes past 16-byte alignment.
      const Operand xf = Random({1 + t * k}, dtype), wf = Random({1 + n * k}, dtype, 1.f / 64);
      const Operand b = Random({n + 1}, dtype);
      const Tensor xv = xf.dev.Rows(1, 1 + t * k).Reshape({t, k}), wv = wf.dev.Rows(1, 1 + n * k).Reshape({n, k});
      ASSERT_FALSE(cuda::GemvApplies(xv, wv));
      ASSERT_FALSE(cuda::GemvApplies(xv, wf.dev.Rows(0, n * k).Reshape({n, k})));  // x alone misaligned
      const Operand xo{xv, xf.ref.Rows(1, 1 + t * k).Reshape({t, k})};
      Tensor out_full = Poisoned({t * n + 1}, dtype);
      Tensor out = out_full.Rows(1, t * n + 1).Reshape({t, n});  // misaligned output too
      ops::Linear(xv, wv, b.dev.Rows(1, n + 1), &out);
      Tensor ref = Poisoned({t, n}, DType::kF32, Device::kCpu);
      ops::Linear(xo.ref, wf.ref.Rows(1, 1 + n * k).Reshape({n, k}), b.ref.Rows(1, n + 1), &ref);
      EXPECT_CLOSE(out, ref, dtype, "misaligned view falls back to cuBLASLt");
    }
  }
}

// fp32 and T > 8 stay on cuBLASLt; K % 8 != 0 too.
TEST_F(OpsGpu, GemvAppliesOnlyToDecodeHalfTypes) {
  EXPECT_TRUE(cuda::GemvApplies(Random({8, 64}, DType::kF16).dev, Random({16, 64}, DType::kF16).dev));
  EXPECT_TRUE(cuda::GemvApplies(Random({1, 64}, DType::kBF16).dev, Random({16, 64}, DType::kBF16).dev));
  EXPECT_FALSE(cuda::GemvApplies(Random({9, 64}, DType::kF16).dev, Random({16, 64}, DType::kF16).dev));
  EXPECT_FALSE(cuda::GemvApplies(Random({2, 64}, DType::kF32).dev, Random({16, 64}, DType::kF32).dev));
  EXPECT_FALSE(cuda::GemvApplies(Random({2, 60}, DType::kF16).dev, Random({16, 60}, DType::kF16).dev));
}

// ---- Norms ---------------------------------------------------------------------------------

TEST_F(OpsGpu, LayerNormAndRmsNorm) {
  for (DType dtype : gpu_test::FloatTypes()) {
    for (int64_t t : {1, 3, 17, 129}) {
      for (int64_t c : {64, 96, 127, 4096, 5120}) {
        // A mean far from zero checks that the variance does not cancel.
        Operand x = Random({t, c}, dtype, 3.f, 2.f), w = Random({c}, dtype), b = Random({c}, dtype);
        for (bool with_bias : {true, false}) {
          const Tensor bias_dev = with_bias ? b.dev : Tensor(), bias_ref = with_bias ? b.ref : Tensor();
          Tensor out = Poisoned({t, c}, dtype);
          ops::LayerNorm(x.dev, w.dev, bias_dev, 1e-5f, &out);
          Tensor ref = Poisoned({t, c}, DType::kF32, Device::kCpu);
          ops::LayerNorm(x.ref, w.ref, bias_ref, 1e-5f, &ref);
          EXPECT_CLOSE(out, ref, dtype, "LayerNorm T=" << t << " C=" << c << " bias=" << with_bias);
        }
        Tensor out = Poisoned({t, c}, dtype);
        ops::RmsNorm(x.dev, w.dev, 1e-6f, &out);
        Tensor ref = Poisoned({t, c}, DType::kF32, Device::kCpu);
        ops::RmsNorm(x.ref, w.ref, 1e-6f, &ref);
        EXPECT_CLOSE(out, ref, dtype, "RmsNorm T=" << t << " C=" << c);
      }
    }
  }
}

TEST_F(OpsGpu, NormsInPlace) {
  for (DType dtype : gpu_test::FloatTypes()) {
    const int64_t t = 17, c = 4096;
    Operand x = Random({t, c}, dtype), w = Random({c}, dtype), b = Random({c}, dtype);
    Tensor ref = Poisoned({t, c}, DType::kF32, Device::kCpu);
    ops::LayerNorm(x.ref, w.ref, b.ref, 1e-5f, &ref);
    Tensor y = x.dev.Clone();
    ops::LayerNorm(y, w.dev, b.dev, 1e-5f, &y);
    EXPECT_CLOSE(y, ref, dtype, "LayerNorm in place");
    ops::RmsNorm(x.ref, w.ref, 1e-6f, &ref);
    y = x.dev.Clone();
    ops::RmsNorm(y, w.dev, 1e-6f, &y);
    EXPECT_CLOSE(y, ref, dtype, "RmsNorm in place");
  }
}

// ---- Element-wise and softmax --------------------------------------------------------------

const std::vector<std::vector<int64_t>>& ElementShapes() {
  static const std::vector<std::vector<int64_t>> shapes = {{1, 64}, {3, 127}, {17, 96}, {129, 4096}, {1, 11008}};
  return shapes;
}

TEST_F(OpsGpu, Relu) {
  for (DType dtype : gpu_test::FloatTypes()) {
    for (const auto& shape : ElementShapes()) {
      Operand x = Random(shape, dtype);
      Tensor y = x.dev.Clone();
      ops::Relu(&y);
      Tensor ref = x.ref.Clone();
      ops::Relu(&ref);
      EXPECT_CLOSE(y, ref, dtype, "Relu " << x.ref.ShapeString());
    }
  }
}

TEST_F(OpsGpu, SiluMulAndAdd) {
  for (DType dtype : gpu_test::FloatTypes()) {
    for (const auto& shape : ElementShapes()) {
      Operand g = Random(shape, dtype, 2.f), u = Random(shape, dtype);
      Tensor out = Poisoned(shape, dtype);
      ops::SiluMul(g.dev, u.dev, &out);
      Tensor ref = Poisoned(shape, DType::kF32, Device::kCpu);
      ops::SiluMul(g.ref, u.ref, &ref);
      EXPECT_CLOSE(out, ref, dtype, "SiluMul " << g.ref.ShapeString());

      out = Poisoned(shape, dtype);
      ops::Add(g.dev, u.dev, &out);
      ops::Add(g.ref, u.ref, &ref);
      EXPECT_CLOSE(out, ref, dtype, "Add " << g.ref.ShapeString());

      // The residual pattern: out aliases an input.
      Tensor acc = g.dev.Clone();
      ops::Add(acc, u.dev, &acc);
      EXPECT_CLOSE(acc, ref, dtype, "Add in place " << g.ref.ShapeString());
    }
  }
}

// Odd element offsets take the scalar path; the element count's tail too.
TEST_F(OpsGpu, ElementWiseOnUnalignedViews) {
  for (DType dtype : gpu_test::FloatTypes()) {
    Operand a = Random({18, 33}, dtype), b = Random({18, 33}, dtype);
    Tensor out_full = Poisoned({18, 33}, dtype);
    Tensor out = out_full.Rows(1, 18);
    ops::SiluMul(a.dev.Rows(1, 18), b.dev.Rows(1, 18), &out);
    Tensor ref = Poisoned({17, 33}, DType::kF32, Device::kCpu);
    ops::SiluMul(a.ref.Rows(1, 18), b.ref.Rows(1, 18), &ref);
    EXPECT_CLOSE(out, ref, dtype, "SiluMul view");
  }
}

TEST_F(OpsGpu, SoftmaxRows) {
  for (DType dtype : gpu_test::FloatTypes()) {
    for (auto shape :
         std::vector<std::vector<int64_t>>{{1, 1}, {3, 127}, {17, 96}, {129, 4096}, {2, 32000}, {4, 3, 17}}) {
      Operand x = Random(shape, dtype, 4.f);
      Tensor y = x.dev.Clone();
      ops::SoftmaxRows(&y);
      Tensor ref = x.ref.Clone();
      ops::SoftmaxRows(&ref);
      EXPECT_CLOSE(y, ref, dtype, "SoftmaxRows " << x.ref.ShapeString());
    }
  }
}

// ---- Embedding and rotary ------------------------------------------------------------------

TEST_F(OpsGpu, Embedding) {
  std::uniform_int_distribution<int32_t> id_dist(0, 1300);
  for (DType dtype : gpu_test::FloatTypes()) {
    for (int64_t cols : {64, 127, 4096}) {
      for (int64_t t : {1, 3, 17, 129}) {
        // This rank holds rows [100, 1100) of a 1301-token vocabulary: some ids fall outside.
        const int64_t row_begin = 100, rows = 1000;
        Operand table = Random({rows, cols}, dtype);
        std::vector<int32_t> ids(t);
        for (auto& id : ids) id = id_dist(gpu_test::Rng());
        ids[0] = 99;               // just below the slice
        if (t > 1) ids[1] = 1100;  // just past it
        auto [ids_host, ids_dev] = Ints(ids);
        Tensor out = Poisoned({t, cols}, dtype);
        ops::Embedding(table.dev, ids_dev, row_begin, &out);
        Tensor ref = Poisoned({t, cols}, DType::kF32, Device::kCpu);
        ops::Embedding(table.ref, ids_host, row_begin, &ref);
        // A copy: exact in every dtype.
        EXPECT_EQ(RelErr(out, ref), 0.0) << DTypeName(dtype) << " T=" << t << " cols=" << cols;
      }
    }
  }
}

TEST_F(OpsGpu, Rotary) {
  std::uniform_int_distribution<int32_t> pos_dist(0, 100000);
  for (DType dtype : gpu_test::FloatTypes()) {
    for (auto [heads, head_dim] : {std::pair{4, 64}, {3, 128}, {2, 96}, {5, 6}, {32, 128}}) {
      for (float theta : {10000.f, 500000.f}) {
        for (int64_t t : {1, 3, 17, 129}) {
          Operand x = Random({t, int64_t{heads} * head_dim}, dtype);
          std::vector<int32_t> positions(t);
          for (auto& p : positions) p = pos_dist(gpu_test::Rng());
          positions[0] = 0;
          auto [pos_host, pos_dev] = Ints(positions);
          Tensor y = x.dev.Clone();
          ops::Rotary(&y, pos_dev, heads, head_dim, theta);
          Tensor ref = x.ref.Clone();
          ops::Rotary(&ref, pos_host, heads, head_dim, theta);
          EXPECT_CLOSE(y, ref, dtype,
                       "Rotary T=" << t << " heads=" << heads << " d=" << head_dim << " theta=" << theta);
        }
      }
    }
  }
}

// ---- CUDA graphs ---------------------------------------------------------------------------

// A decode-like chain captured into a CUDA graph and replayed gives the eager results: no op
// synchronises the host or allocates (capture would fail), and all run on CurrentStream().
TEST_F(OpsGpu, DecodeChainCapturesIntoAGraph) {
  for (DType dtype : gpu_test::FloatTypes()) {
    const int64_t t = 2, hidden = 256, inter = 512, heads = 4, d = 64;
    Operand table = Random({1000, hidden}, dtype), norm_w = Random({hidden}, dtype);
    Operand w_up = Random({inter, hidden}, dtype, 0.06f), w_gate = Random({inter, hidden}, dtype, 0.06f);
    Operand w_down = Random({hidden, inter}, dtype, 0.04f), b_down = Random({hidden}, dtype);
    auto [ids_host, ids] = Ints({7, 512});
    auto [pos_host, pos] = Ints({3, 40});
    Tensor h = Poisoned({t, hidden}, dtype), n = Poisoned({t, hidden}, dtype), up = Poisoned({t, inter}, dtype);
    Tensor gate = Poisoned({t, inter}, dtype), act = Poisoned({t, inter}, dtype), down = Poisoned({t, hidden}, dtype);
    auto step = [&] {
      ops::Embedding(table.dev, ids, 0, &h);
      ops::RmsNorm(h, norm_w.dev, 1e-6f, &n);
      ops::Linear(n, w_up.dev, Tensor(), &up);
      ops::Linear(n, w_gate.dev, Tensor(), &gate);
      ops::SiluMul(gate, up, &act);
      ops::Linear(act, w_down.dev, b_down.dev, &down);
      ops::Add(h, down, &h);
      ops::Rotary(&h, pos, heads, d, 10000.f);
      ops::SoftmaxRows(&h);
    };
    step();  // eager: also creates plans, handles and the workspace before capture
    const std::vector<float> eager = h.ToFloats();
    h = Poisoned({t, hidden}, dtype);  // a fresh buffer: the graph must write it

    ASSERT_NO_FATAL_FAILURE(gpu_test::CaptureAndLaunch(step, 3));
    // Equal up to the order of cuBLASLt's split-K reductions, which may differ between runs.
    EXPECT_LT(RelErr(h.ToFloats(), eager), Tolerance(dtype) * 0.1) << DTypeName(dtype);
  }
}

// Tensors made inside a capture are graph allocations (freed there: a free node); a tensor that
// predates the capture and is dropped inside it has its free deferred until after the capture.
TEST_F(OpsGpu, TensorsAllocatedAndFreedDuringCapture) {
  for (DType dtype : gpu_test::FloatTypes()) {
    Operand a = Random({4, 256}, dtype), b = Random({4, 256}, dtype);
    Tensor out = Poisoned({4, 256}, dtype);
    Tensor old = Poisoned({1000}, dtype);
    auto step = [&] {
      Tensor tmp = Tensor::Empty({4, 256}, dtype, Device::kCuda);
      ops::Add(a.dev, b.dev, &tmp);
      ops::Add(tmp, b.dev, &out);
      old = Tensor();
    };
    ASSERT_NO_FATAL_FAILURE(gpu_test::CaptureAndLaunch(step, 2, cudaStreamCaptureModeThreadLocal));
    Tensor ref = Poisoned({4, 256}, DType::kF32, Device::kCpu);
    ops::Add(a.ref, b.ref, &ref);
    ops::Add(ref, b.ref, &ref);
    EXPECT_CLOSE(out, ref, dtype, "a + b + b through a graph");
    Tensor after = Tensor::Empty({16}, dtype, Device::kCuda);  // also releases the deferred free
    ASSERT_EQ(cudaStreamSynchronize(cuda::CurrentStream()), cudaSuccess);
    ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  }
}

}  // namespace
}  // namespace chai
