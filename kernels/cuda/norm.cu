// LayerNorm (OPT) and RMSNorm (LLaMA): one block per row, 16-byte loads when the row allows; and
// the same norms fused with the residual add before them (AddLayerNorm, AddRmsNorm).
//
// Statistics in fp32 with tree reductions; LayerNorm takes two passes over the row (mean, then
// the centred variance) so that a large mean cannot cancel the variance. The later passes
// re-read the row from L1/L2, not DRAM. out may alias x: every element is read before the
// final pass writes it, and the reductions' barriers separate the passes.
//
// With a residual y, the first pass also adds it: x = x + y rounded to T, stored back into x, and
// the statistics and the output use that rounded sum, so the result equals Add then the norm
// bit for bit (same passes, same reduction order). Every pass visits the same elements in each
// thread, so later passes read back the sum their own thread stored.
#include "kernels/cuda/cuda_utils.cuh"
#include "kernels/cuda/pdl.cuh"

namespace chai::cuda {
namespace {

template <typename T, int N, bool kRms>
__global__ void NormKernel(T* x, const T* residual, const T* weight, const T* bias, float eps, int64_t cols, T* out) {
  PdlWait();
  __shared__ float scratch[32];
  const int64_t row = blockIdx.x;
  T* in = x + row * cols;
  const T* res = residual != nullptr ? residual + row * cols : nullptr;
  T* o = out + row * cols;
  const int64_t vecs = cols / N;
  // The first pass's load: x, or x + y stored back into x.
  auto first_load = [&](int64_t i) {
    Vec<T, N> v = LoadVec<T, N>(in + i * N);
    if (res != nullptr) {
      const Vec<T, N> r = LoadVec<T, N>(res + i * N);
#pragma unroll
      for (int j = 0; j < N; ++j) v.v[j] = FromFloat<T>(ToFloat(v.v[j]) + ToFloat(r.v[j]));
      StoreVec<T, N>(in + i * N, v);
    }
    return v;
  };

  float mean = 0.f;
  if constexpr (!kRms) {
    float sum = 0.f;
    for (int64_t i = threadIdx.x; i < vecs; i += blockDim.x) {
      const Vec<T, N> v = first_load(i);
#pragma unroll
      for (int j = 0; j < N; ++j) sum += ToFloat(v.v[j]);
    }
    mean = BlockSum(sum, scratch) / static_cast<float>(cols);
  }
  float ss = 0.f;
  for (int64_t i = threadIdx.x; i < vecs; i += blockDim.x) {
    const Vec<T, N> v = kRms ? first_load(i) : LoadVec<T, N>(in + i * N);
#pragma unroll
    for (int j = 0; j < N; ++j) {
      const float d = ToFloat(v.v[j]) - mean;
      ss += d * d;
    }
  }
  const float inv = rsqrtf(BlockSum(ss, scratch) / static_cast<float>(cols) + eps);

  for (int64_t i = threadIdx.x; i < vecs; i += blockDim.x) {
    const Vec<T, N> v = LoadVec<T, N>(in + i * N);
    const Vec<T, N> w = LoadVec<T, N>(weight + i * N);
    Vec<T, N> b;
    if (bias != nullptr) b = LoadVec<T, N>(bias + i * N);
    Vec<T, N> r;
#pragma unroll
    for (int j = 0; j < N; ++j) {
      float y = (ToFloat(v.v[j]) - mean) * inv * ToFloat(w.v[j]);
      if (bias != nullptr) y += ToFloat(b.v[j]);
      r.v[j] = FromFloat<T>(y);
    }
    StoreVec<T, N>(o + i * N, r);
  }
}

// residual: null for the plain norms; else x is updated in place (x += residual) first.
template <bool kRms>
void LaunchNorm(const Tensor& x, const Tensor* residual, const Tensor& weight, const Tensor* bias, float eps,
                Tensor* out) {
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
    // Rows of up to 8K elements at 8 per vector need only 1024 lanes of work; 256 threads keep
    // several rows resident per SM in prefill and still spread a decode row over 8 warps.
    const int threads = RowThreads(vecs, vecs >= 2048 ? 512 : 256);
    auto* xp = x.data<T>();  // written only with a residual (the fused ops' in-place x)
    auto* yp = static_cast<const T*>(y);
    auto* wp = weight.data<T>();
    auto* bp = static_cast<const T*>(b);
    auto* op = out->data<T>();
    if (wide) {
      LaunchPdl(NormKernel<T, kN, kRms>, rows, threads, 0, CurrentStream(), xp, yp, wp, bp, eps, cols, op);
    } else {
      LaunchPdl(NormKernel<T, 1, kRms>, rows, threads, 0, CurrentStream(), xp, yp, wp, bp, eps, cols, op);
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

void AddLayerNorm(Tensor* x, const Tensor& y, const Tensor& weight, const Tensor& bias, float eps, Tensor* out) {
  LaunchNorm<false>(*x, &y, weight, &bias, eps, out);
}

void AddRmsNorm(Tensor* x, const Tensor& y, const Tensor& weight, float eps, Tensor* out) {
  LaunchNorm<true>(*x, &y, weight, nullptr, eps, out);
}

}  // namespace chai::cuda
