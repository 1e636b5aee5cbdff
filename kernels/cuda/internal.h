// Helpers shared between the CUDA op files; not part of the op interface.
//
// The cuBLASLt handle and its workspace are created once (lazily, on the device current at the
// first call) so that ops never allocate and a decode step can be captured in a CUDA graph.
#ifndef CHAI_KERNELS_CUDA_INTERNAL_H_
#define CHAI_KERNELS_CUDA_INTERNAL_H_

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstddef>

#include "kernels/cuda/cuda_ops.h"

namespace chai::cuda {

// stream.cc
cublasLtHandle_t LtHandle();
struct Workspace {
  void* data;
  size_t bytes;
};
Workspace LtWorkspace();  // used only in stream order on CurrentStream()
int SmCount();            // multiprocessors of the current device (read once)
bool CopyEngineDevice();  // compute capability >= 9.0: bulk copies and prefetches (read once per device)

// elementwise.cu: out[t, n] += bias[n] for out [T, N]. Linear's fallback when cuBLASLt has no
// bias-epilogue kernel for the operands' alignment.
void AddBiasRows(const Tensor& bias, Tensor* out);

// gemv.cu: the decode path of Linear, out[T, N] = x[T, K] * W[N, K]^T (+ bias[N]) for
// 1 <= T <= kGemvMaxTokens, fp16 or bf16, K % 8 == 0 and x, W 16-byte aligned (GemvApplies);
// a bandwidth-bound stream over W on the tensor cores with fp32 accumulation. Deterministic,
// no allocation, no synchronisation. `variant` picks a launch configuration (benchmarks and
// tests; 0 .. GemvNumVariants() - 1), negative for the default choice.
constexpr int kGemvMaxTokens = 8;
bool GemvApplies(const Tensor& x, const Tensor& weight);
void Gemv(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor* out, int variant = -1);
int GemvNumVariants();
const char* GemvVariantName(int variant);  // "auto" for a negative variant
// The plain GEMV's launch over W [n, k] (negative variant: the default one): its configuration, its
// grid (row blocks x planned splits of K), how many of its CTAs fit an SM at once, and how evenly
// a CTA's warps share its K span (mean warp iterations over the busiest warp's; 1 = even).
struct GemvShapePlan {
  const char* variant;
  int64_t row_blocks, splits;
  int ctas_per_sm;
  double warp_balance;
};
GemvShapePlan GemvPlan(int64_t k, int64_t n, int variant = -1);
// LinearFused in one GEMV kernel (the RMSNorm prologue, the residual or SiLU epilogue), where
// GemvFusedApplies: GemvApplies, a bias of x's dtype, a 16-byte-aligned norm weight of x's
// dtype, an even N for the SiLU epilogue. out must not overlap x (ops.cc checks).
bool GemvFusedApplies(const Tensor& x, const Tensor& weight, const Tensor& bias, const ops::LinearFusion& fusion);
void GemvFused(const Tensor& x, const Tensor& weight, const Tensor& bias, const ops::LinearFusion& fusion, Tensor* out);

// linear.cc: Linear through cuBLASLt only (the path for T > kGemvMaxTokens, fp32 and operands
// GemvApplies rejects), for benchmarks and tests that compare the two.
void LinearCublasLt(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor* out);

}  // namespace chai::cuda

#endif  // CHAI_KERNELS_CUDA_INTERNAL_H_
