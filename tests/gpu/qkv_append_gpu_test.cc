// ops::QkvLinearAppend on CUDA (the Q|K|V decode GEMV whose epilogue splits q, k and v, rotates q
// and k and appends k and v to the paged cache) against the CPU reference (Linear, the product
// rounded to the dtype as the device stores it, then SplitQkvRotaryAppend) and against the two CUDA
// ops it replaces (Linear then SplitQkvRotaryAppend); with the RMSNorm folded in too; and the
// one-kernel path captured into a graph (the eager call before it allocates what the GEMV keeps).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <utility>
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
using gpu_test::Operand;
using gpu_test::Poisoned;
using gpu_test::Random;
using gpu_test::SameBytes;

class QkvAppendGpu : public GpuTest {};

struct Heads {
  int heads, kv_heads, head_dim;
};

// One step through QkvLinearAppend (weights w [n, k], bias b) against the CPU reference within the
// dtype's tolerance (q and every written slot; no other slot touched) and against Linear +
// SplitQkvRotaryAppend on the GPU. Returns whether the latter agree bit for bit (required without
// rotary; counted by the caller with it).
bool CheckQkvAppendStep(DType dtype, Heads hs, int64_t k, const Operand& w, const Operand& b,
                        const test::PagedAppendCase& c, bool rotary, bool with_bias) {
  const int64_t qw = int64_t{hs.heads} * hs.head_dim, kvw = int64_t{hs.kv_heads} * hs.head_dim;
  const int64_t n = qw + 2 * kvw, t = c.rows;
  const Operand x = Random({t, k}, dtype);
  const BatchLayout batch = test::LayoutOn(c, Device::kCuda), host_batch = test::HostLayout(c);
  const Tensor tables = c.tables.To(Device::kCuda), positions = c.positions.To(Device::kCuda);
  const std::vector<int64_t> pool_shape = {c.num_blocks, c.block_size, hs.head_dim};
  const Tensor bias_dev = with_bias ? b.dev : Tensor(), bias_ref = with_bias ? b.ref : Tensor();
  // The CPU reference: the product as the device stores it (rounded), then the split.
  Tensor qkv_r = Tensor::Empty({t, n}, DType::kF32);
  ops::Linear(x.ref, w.ref, bias_ref, &qkv_r);
  qkv_r = qkv_r.Cast(dtype).Cast(DType::kF32);
  Tensor q_r = Poisoned({t, qw}, DType::kF32, Device::kCpu);
  Tensor pool_r = Poisoned(pool_shape, DType::kF32, Device::kCpu);
  ops::SplitQkvRotaryAppend(qkv_r, c.positions, hs.heads, hs.kv_heads, hs.head_dim, 10000.f, rotary,
                            PagedKv{pool_r, c.tables, c.block_size, hs.kv_heads, c.max_blocks}, host_batch, &q_r,
                            nullptr, nullptr);
  // The one kernel (not the composition the op falls back to).
  EXPECT_TRUE(cuda::QkvLinearAppendIsOneKernel(x.dev, w.dev, bias_dev, hs.head_dim, positions, batch, Tensor()));
  Tensor q = Poisoned({t, qw}, dtype), pool = Poisoned(pool_shape, dtype);
  const PagedKv kv{pool, tables, c.block_size, hs.kv_heads, c.max_blocks};
  ops::QkvLinearAppend(x.dev, w.dev, bias_dev, positions, hs.heads, hs.kv_heads, hs.head_dim, 10000.f, rotary, kv,
                       batch, &q);
  // The two ops it replaces.
  Tensor qkv_u = Poisoned({t, n}, dtype), q_u = Poisoned({t, qw}, dtype);
  Tensor pool_u = Poisoned(pool_shape, dtype);
  ops::Linear(x.dev, w.dev, bias_dev, &qkv_u);
  ops::SplitQkvRotaryAppend(qkv_u, positions, hs.heads, hs.kv_heads, hs.head_dim, 10000.f, rotary,
                            PagedKv{pool_u, tables, c.block_size, hs.kv_heads, c.max_blocks}, batch, &q_u, nullptr,
                            nullptr);

  EXPECT_CLOSE(q, q_r, dtype, "q");
  ExpectPoolClose(pool, pool_r, dtype);
  const bool identical = SameBytes(q, q_u) && SameBytes(pool, pool_u);
  // With rotary, RotatePair's expression compiled in another kernel: fp32 contraction may differ in
  // the last bit.
  if (!rotary) {
    EXPECT_TRUE(identical) << "q or the pool differs from Linear + SplitQkvRotaryAppend";
  }
  return identical;
}

// Decode-sized steps (at most 8 rows, where the GEMV applies) of the shared layouts, with and
// without persistent table rows and CHAI-dropped K heads; LLaMA-7B's heads (MHA and GQA), small
// and odd head sizes; with and without rotary and bias; K = 4096 and 264 (a K tail). Against the
// CPU reference and against Linear + SplitQkvRotaryAppend (CheckQkvAppendStep): bit for bit without
// rotary (the same GEMV sums, rounded to the dtype, then PagedAppend's slots); with rotary the
// identical cases are counted and printed.
TEST_F(QkvAppendGpu, MatchesReferenceAndUnfusedOps) {
  const Heads shapes[] = {{32, 32, 128}, {32, 8, 128}, {4, 2, 64}, {3, 1, 96}, {2, 1, 8}};
  int rotary_identical = 0, rotary_cases = 0;
  for (DType dtype : {DType::kF16, DType::kBF16}) {
    for (Heads hs : shapes) {
      const int64_t n = int64_t{hs.heads + 2 * hs.kv_heads} * hs.head_dim;
      for (int64_t k : {4096, 264}) {
        const Operand w = gpu_test::FastRandom({n, k}, dtype, 1.f / std::sqrt(float(k)));
        const Operand b = Random({n}, dtype);
        for (const test::StepShape& shape : test::PagedAppendShapes()) {
          for (int variant = 0; variant < 4; ++variant) {
            const bool use_slots = variant & 1, drop_k = variant & 2;
            const test::PagedAppendCase c = test::MakePagedAppendCase(gpu_test::Rng(), hs.kv_heads, 16,
                                                                      shape.new_tokens, shape.lens, use_slots, drop_k);
            if (c.rows > 8) continue;  // prefill: Linear's GEMM, the composition (the engine never asks)
            for (bool rotary : {true, false}) {
              for (bool with_bias : {true, false}) {
                SCOPED_TRACE(::testing::Message()
                             << DTypeName(dtype) << " heads=" << hs.heads << " kv=" << hs.kv_heads
                             << " d=" << hs.head_dim << " K=" << k << " T=" << c.rows << " seqs=" << c.num_seqs
                             << " slots=" << use_slots << " drop_k=" << drop_k << " rotary=" << rotary
                             << " bias=" << with_bias);
                const bool identical = CheckQkvAppendStep(dtype, hs, k, w, b, c, rotary, with_bias);
                if (rotary) {
                  rotary_identical += identical;
                  ++rotary_cases;
                }
              }
            }
          }
        }
      }
    }
  }
  std::printf("QkvLinearAppend with rotary: %d of %d cases bit-identical to Linear + SplitQkvRotaryAppend\n",
              rotary_identical, rotary_cases);
}

// OPT-66B's Q|K|V shard at TP = 4 (18 heads of 128, K = 9216: N = 6912), where the GEMV's default
// configuration is chosen by the shape rule (u8.b2, not u4.b3 by width; gemv.cu DefaultVariant):
// a decode batch without rotary, with bias, as OPT runs it.
TEST_F(QkvAppendGpu, AtOpt66bTensorParallelShard) {
  const Heads hs{18, 18, 128};
  const int64_t k = 9216, n = int64_t{3 * 18} * 128;
  for (DType dtype : {DType::kF16, DType::kBF16}) {
    const Operand w = gpu_test::FastRandom({n, k}, dtype, 1.f / std::sqrt(float(k)));
    const Operand b = Random({n}, dtype);
    for (const test::StepShape& shape : {test::PagedAppendShapes()[0], test::PagedAppendShapes()[1]}) {
      const test::PagedAppendCase c =
          test::MakePagedAppendCase(gpu_test::Rng(), hs.kv_heads, 16, shape.new_tokens, shape.lens, false, false);
      SCOPED_TRACE(::testing::Message() << DTypeName(dtype) << " T=" << c.rows);
      CheckQkvAppendStep(dtype, hs, k, w, b, c, /*rotary=*/false, /*with_bias=*/true);
    }
  }
}

// With the RMSNorm folded in (LinearFusion::kAll's attention norm): against the CPU reference
// (RmsNorm, Linear, the product rounded to the dtype, then SplitQkvRotaryAppend) within the
// dtype's tolerance, for rows at a residual stream's scale and for rows whose mean square is
// below eps (where leaving eps out would scale the outputs by ~3). Against LinearFused with the
// same norm then SplitQkvRotaryAppend on the GPU (the same folded-norm GEMV sums) bit-identical
// cases are counted and printed, not required: the norm's scale times the sum, plus the bias, may
// contract into one fma in one kernel and not in the other (seen on an H100: some fp16 and bf16
// cases differ in the last bit).
TEST_F(QkvAppendGpu, FoldsTheRmsNorm) {
  const Heads shapes[] = {{32, 8, 128}, {4, 2, 64}};
  constexpr float kEps = 1e-5f;
  int identical = 0, cases = 0;
  for (DType dtype : {DType::kF16, DType::kBF16}) {
    for (Heads hs : shapes) {
      const int64_t qw = int64_t{hs.heads} * hs.head_dim, n = qw + 2 * int64_t{hs.kv_heads} * hs.head_dim;
      for (int64_t k : {4096, 264}) {
        const Operand w = gpu_test::FastRandom({n, k}, dtype, 1.f / std::sqrt(float(k)));
        const Operand b = Random({n}, dtype), norm_w = Random({k}, dtype, 0.2f, 1.f);
        const test::PagedAppendCase c =
            test::MakePagedAppendCase(gpu_test::Rng(), hs.kv_heads, 16, {1, 1, 1}, {7, 20, 33}, true, false);
        const BatchLayout batch = test::LayoutOn(c, Device::kCuda), host_batch = test::HostLayout(c);
        const Tensor tables = c.tables.To(Device::kCuda), positions = c.positions.To(Device::kCuda);
        const std::vector<int64_t> pool_shape = {c.num_blocks, c.block_size, hs.head_dim};
        for (auto [x_scale, rotary] : {std::pair{3.f, true}, {3.f, false}, {1e-3f, true}}) {
          SCOPED_TRACE(::testing::Message() << DTypeName(dtype) << " heads=" << hs.heads << " kv=" << hs.kv_heads
                                            << " d=" << hs.head_dim << " K=" << k << " x scale " << x_scale
                                            << " rotary=" << rotary);
          const Operand x = Random({c.rows, k}, dtype, x_scale);
          ASSERT_TRUE(cuda::QkvLinearAppendIsOneKernel(x.dev, w.dev, b.dev, hs.head_dim, positions, batch, norm_w.dev));
          Tensor normed = Tensor::Empty({c.rows, k}, DType::kF32);
          ops::RmsNorm(x.ref, norm_w.ref, kEps, &normed);
          Tensor qkv_r = Tensor::Empty({c.rows, n}, DType::kF32);
          ops::Linear(normed, w.ref, b.ref, &qkv_r);
          qkv_r = qkv_r.Cast(dtype).Cast(DType::kF32);
          Tensor q_r = Poisoned({c.rows, qw}, DType::kF32, Device::kCpu);
          Tensor pool_r = Poisoned(pool_shape, DType::kF32, Device::kCpu);
          ops::SplitQkvRotaryAppend(qkv_r, c.positions, hs.heads, hs.kv_heads, hs.head_dim, 10000.f, rotary,
                                    PagedKv{pool_r, c.tables, c.block_size, hs.kv_heads, c.max_blocks}, host_batch,
                                    &q_r, nullptr, nullptr);
          Tensor q = Poisoned({c.rows, qw}, dtype), pool = Poisoned(pool_shape, dtype);
          ops::QkvLinearAppend(x.dev, w.dev, b.dev, positions, hs.heads, hs.kv_heads, hs.head_dim, 10000.f, rotary,
                               PagedKv{pool, tables, c.block_size, hs.kv_heads, c.max_blocks}, batch, &q, norm_w.dev,
                               kEps);
          EXPECT_CLOSE(q, q_r, dtype, "q");
          ExpectPoolClose(pool, pool_r, dtype);
          Tensor qkv_u = Poisoned({c.rows, n}, dtype), q_u = Poisoned({c.rows, qw}, dtype);
          Tensor pool_u = Poisoned(pool_shape, dtype);
          ops::LinearFused(x.dev, w.dev, b.dev, ops::LinearFusion{norm_w.dev, kEps, ops::LinearOutput::kStore}, &qkv_u);
          ops::SplitQkvRotaryAppend(qkv_u, positions, hs.heads, hs.kv_heads, hs.head_dim, 10000.f, rotary,
                                    PagedKv{pool_u, tables, c.block_size, hs.kv_heads, c.max_blocks}, batch, &q_u,
                                    nullptr, nullptr);
          identical += SameBytes(q, q_u) && SameBytes(pool, pool_u);
          ++cases;
        }
      }
    }
  }
  std::printf("QkvLinearAppend with the norm folded in: %d of %d cases bit-identical to LinearFused + "
              "SplitQkvRotaryAppend\n",
              identical, cases);
}

// The one-kernel path recorded into a CUDA graph and replayed gives the eager results: no
// allocation, synchronisation or stream change inside (as the engine's decode graphs need).
TEST_F(QkvAppendGpu, CapturesIntoAGraph) {
  const Heads hs{4, 2, 64};
  const int64_t qw = int64_t{hs.heads} * hs.head_dim, n = qw + 2 * int64_t{hs.kv_heads} * hs.head_dim, k = 512;
  for (DType dtype : {DType::kF16, DType::kBF16}) {
    const test::PagedAppendCase c =
        test::MakePagedAppendCase(gpu_test::Rng(), hs.kv_heads, 16, {1, 1, 1}, {7, 20, 33}, true, false);
    const Operand x = Random({c.rows, k}, dtype), w = Random({n, k}, dtype, 0.05f), b = Random({n}, dtype);
    const BatchLayout batch = test::LayoutOn(c, Device::kCuda);
    const Tensor tables = c.tables.To(Device::kCuda), positions = c.positions.To(Device::kCuda);
    const std::vector<int64_t> pool_shape = {c.num_blocks, c.block_size, hs.head_dim};
    Tensor q_eager = Poisoned({c.rows, qw}, dtype), pool_eager = Poisoned(pool_shape, dtype);
    ops::QkvLinearAppend(x.dev, w.dev, b.dev, positions, hs.heads, hs.kv_heads, hs.head_dim, 10000.f, true,
                         PagedKv{pool_eager, tables, c.block_size, hs.kv_heads, c.max_blocks}, batch, &q_eager);
    Tensor q = Poisoned({c.rows, qw}, dtype), pool = Poisoned(pool_shape, dtype);
    const PagedKv kv{pool, tables, c.block_size, hs.kv_heads, c.max_blocks};
    ASSERT_NO_FATAL_FAILURE(gpu_test::CaptureAndLaunch(
        [&] {
          ops::QkvLinearAppend(x.dev, w.dev, b.dev, positions, hs.heads, hs.kv_heads, hs.head_dim, 10000.f, true, kv,
                               batch, &q);
        },
        2));
    EXPECT_TRUE(SameBytes(q, q_eager)) << DTypeName(dtype) << ": q differs from the eager call";
    EXPECT_TRUE(SameBytes(pool, pool_eager)) << DTypeName(dtype) << ": the pool differs from the eager call";
  }
}

}  // namespace
}  // namespace chai
