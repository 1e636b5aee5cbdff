// LayerNorm (OPT) and RMSNorm (LLaMA): one block per row, 16-byte loads when the row allows; and
// the same norms fused with the residual add before them (AddLayerNorm, AddRmsNorm).
//
// The row's passes are NormRow (norm_row.cuh), shared with the all-reduce + norm of parallel/.
//
// With a residual y, the first pass also adds it: x = x + y rounded to T, stored back into x, and
// the statistics and the output use that rounded sum, so the result equals Add then the norm
// bit for bit (same passes, same reduction order). Every pass visits the same elements in each
// thread, so later passes read back the sum their own thread stored. (Holding the row and the
// weights in registers, the weights loaded before the statistics, to save the last pass's L2 round
// trip was measured on an H100: LLaMA-7B batch 1 5.139 / 5.098 ms against 5.102 / 5.111, no gain;
// removed. llama-7b-tp1-h100.md.)
//
// With an L2Prefetch hint (`then`, the next GEMV's first weight bytes: kernels/l2_prefetch.h) the
// grid has kPrefetchCtas more CTAs after the rows' that only issue the hint's L2 bulk prefetches
// and exit: the row CTAs' latency-bound passes leave DRAM idle for ~3 us at batch 1.
#include "kernels/cuda/cuda_utils.cuh"
#include "kernels/cuda/l2_prefetch.cuh"
#include "kernels/cuda/norm_row.cuh"
#include "kernels/cuda/pdl.cuh"

namespace chai::cuda {
namespace {

// CTAs that issue a norm's L2Prefetch hint: each range is one bulk prefetch, and consecutive ranges
// go to different CTAs (SMs), whose copy engines then fetch in parallel.
constexpr int kPrefetchCtas = 32;

template <typename T, int N, bool kRms>
__global__ void NormKernel(T* x, const T* residual, const T* weight, const T* bias, float eps, int64_t cols, T* out,
                           int64_t rows, const L2Prefetch then) {
  if (blockIdx.x >= rows) {  // weights only: allowed before the PDL wait
    const int64_t ctas = gridDim.x - rows;
    IssueL2Prefetch(then, threadIdx.x * ctas + (blockIdx.x - rows), ctas * blockDim.x);
    return;
  }
  // The norm's weights (a few KB, evicted from L2 by the layer's weight stream since the last step)
  // are constants: fetch the lines this thread will read while the previous kernel drains (PDL).
  for (int64_t i = threadIdx.x * N; i < cols; i += int64_t{blockDim.x} * N) {
    PrefetchL2(weight + i);
    if (bias != nullptr) PrefetchL2(bias + i);
  }
  PdlWait();
  __shared__ float scratch[32];
  const int64_t row = blockIdx.x;
  T* in = x + row * cols;
  const T* res = residual != nullptr ? residual + row * cols : nullptr;
  // The first pass's load: x, or x + y stored back into x.
  auto first_load = [&](int64_t i) {
    Vec<T, N> v = LoadVec<T, N>(in + i * N);
    if (res != nullptr) {
      v = AddRounded<T, N>(v, LoadVec<T, N>(res + i * N));
      StoreVec<T, N>(in + i * N, v);
    }
    return v;
  };
  NormRow<T, N, kRms>(in, first_load, weight, bias, eps, cols, out + row * cols, scratch, blockDim.x);
}

// residual: null for the plain norms; else x is updated in place (x += residual) first.
template <bool kRms>
void LaunchNorm(const Tensor& x, const Tensor* residual, const Tensor& weight, const Tensor* bias, float eps,
                Tensor* out, const L2Prefetch& then = {}) {
  const int64_t rows = x.dim(0), cols = x.dim(1);
  if (rows == 0 || cols == 0) return;
  const void* b = bias != nullptr && bias->defined() ? bias->raw() : nullptr;
  const void* y = residual != nullptr ? residual->raw() : nullptr;
  const char* name = residual != nullptr ? (kRms ? "AddRmsNorm" : "AddLayerNorm") : (kRms ? "RmsNorm" : "LayerNorm");
  DispatchFloat(x.dtype(), name, [&](auto tag) {
    using T = decltype(tag);
    constexpr int kN = kVec16<T>;
    const bool wide = cols % kN == 0 && Aligned(16, {x.raw(), y, weight.raw(), b, out->raw()});
    const int64_t vecs = wide ? cols / kN : cols;
    const int threads = NormRowThreads(vecs);
    auto* xp = x.data<T>();  // written only with a residual (the fused ops' in-place x)
    auto* yp = static_cast<const T*>(y);
    auto* wp = weight.data<T>();
    auto* bp = static_cast<const T*>(b);
    auto* op = out->data<T>();
    const int64_t grid = rows + (then.empty() ? 0 : kPrefetchCtas);
    if (wide) {
      LaunchPdl(NormKernel<T, kN, kRms>, grid, threads, 0, CurrentStream(), xp, yp, wp, bp, eps, cols, op, rows, then);
    } else {
      LaunchPdl(NormKernel<T, 1, kRms>, grid, threads, 0, CurrentStream(), xp, yp, wp, bp, eps, cols, op, rows, then);
    }
  });
}

}  // namespace

void LayerNorm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps, Tensor* out) {
  LaunchNorm<false>(x, nullptr, weight, &bias, eps, out);
}

void RmsNorm(const Tensor& x, const Tensor& weight, float eps, Tensor* out) {
  LaunchNorm<true>(x, nullptr, weight, nullptr, eps, out);
}

void AddLayerNorm(Tensor* x, const Tensor& y, const Tensor& weight, const Tensor& bias, float eps, Tensor* out,
                  const L2Prefetch& then) {
  LaunchNorm<false>(*x, &y, weight, &bias, eps, out, then);
}

void AddRmsNorm(Tensor* x, const Tensor& y, const Tensor& weight, float eps, Tensor* out, const L2Prefetch& then) {
  LaunchNorm<true>(*x, &y, weight, nullptr, eps, out, then);
}

}  // namespace chai::cuda
