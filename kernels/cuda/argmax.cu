// ArgmaxRows on the GPU: one CTA per row. Each thread keeps the best (value, index) of its
// strided elements, then the CTA reduces the pairs: a larger value wins, an equal value with a
// smaller index wins, NaN is never taken, so the result is the row's first maximum exactly as
// the CPU op finds it (values are compared in fp32, which holds fp16/bf16 exactly).
#include <climits>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/cuda_utils.cuh"
#include "kernels/cuda/pdl.cuh"

namespace chai::cuda {
namespace {

constexpr int kArgmaxThreads = 256;

__device__ __forceinline__ void Better(float v, int i, float* best_v, int* best_i) {
  if (v > *best_v || (v == *best_v && i < *best_i)) {
    *best_v = v;
    *best_i = i;
  }
}

template <typename T>
__global__ void __launch_bounds__(kArgmaxThreads)
    ArgmaxRowsKernel(const T* __restrict__ x, int64_t stride, int cols, int32_t* __restrict__ ids) {
  PdlWait();
  const T* row = x + blockIdx.x * stride;
  float best_v = -INFINITY;
  int best_i = INT_MAX;  // none yet: any non-NaN value, -inf included, takes its place
  for (int i = threadIdx.x; i < cols; i += kArgmaxThreads) {
    const float v = ToFloat(row[i]);
    if (!isnan(v)) Better(v, i, &best_v, &best_i);
  }
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) {
    const float v = __shfl_down_sync(0xffffffffu, best_v, offset);
    const int i = __shfl_down_sync(0xffffffffu, best_i, offset);
    Better(v, i, &best_v, &best_i);
  }
  __shared__ float warp_v[kArgmaxThreads / 32];
  __shared__ int warp_i[kArgmaxThreads / 32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) {
    warp_v[warp] = best_v;
    warp_i[warp] = best_i;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < kArgmaxThreads / 32; ++w) Better(warp_v[w], warp_i[w], &best_v, &best_i);
    ids[blockIdx.x] = best_i == INT_MAX ? 0 : best_i;  // a row of NaN only
  }
}

}  // namespace

void ArgmaxRows(const Tensor& x, int64_t cols, Tensor* ids) {
  const int64_t rows = x.dim(0);
  if (rows == 0) return;
  DispatchFloat(x.dtype(), "ArgmaxRows", [&](auto tag) {
    using T = decltype(tag);
    LaunchPdl(ArgmaxRowsKernel<T>, static_cast<unsigned>(rows), kArgmaxThreads, 0, CurrentStream(),
              static_cast<const T*>(x.raw()), x.dim(1), static_cast<int>(cols), ids->data<int32_t>());
  });
}

}  // namespace chai::cuda
