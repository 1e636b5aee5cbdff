#include "kernels/gemm_rate.h"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "kernels/ops.h"

#ifdef CHAI_WITH_CUDA
#include <cuda_runtime.h>

#include "kernels/cuda/cuda_ops.h"
#endif

namespace chai {

#ifdef CHAI_WITH_CUDA
namespace {

// Random values in [-1, 1) of `dtype` on `device` (a cheap generator: the values only need to
// be non-trivial, so that the product runs at the rate real data gets).
Tensor RandomTensor(std::vector<int64_t> shape, DType dtype, Device device) {
  Tensor host = Tensor::Empty(shape, DType::kF32);
  uint32_t state = 12345u;
  float* p = host.data<float>();
  for (int64_t i = 0; i < host.numel(); ++i) {
    state = state * 1664525u + 1013904223u;
    p[i] = static_cast<float>(state >> 8) / static_cast<float>(1u << 23) - 1.f;
  }
  return host.Cast(dtype).To(device);
}

}  // namespace
#endif

double MeasureGemmFlops(Device device, DType dtype) {
#ifdef CHAI_WITH_CUDA
  if (device != Device::kCuda) return 0;
  constexpr int64_t kT = 4096, kK = 4096, kN = 12288;
  const Tensor x = RandomTensor({kT, kK}, dtype, device);
  const Tensor w = RandomTensor({kN, kK}, dtype, device);
  Tensor y = Tensor::Empty({kT, kN}, dtype, device);
  cudaStream_t stream = cuda::CurrentStream();
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  std::vector<double> times;
  for (int i = 0; i < 13; ++i) {
    cudaEventRecord(start, stream);
    ops::Linear(x, w, Tensor(), &y);
    cudaEventRecord(stop, stream);
    cudaEventSynchronize(stop);
    float ms = 0;
    cudaEventElapsedTime(&ms, start, stop);
    if (i >= 3) times.push_back(ms / 1e3);  // the first calls warm up (plans, clocks)
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::sort(times.begin(), times.end());
  const double median = times[times.size() / 2];
  return median > 0 ? 2.0 * kT * kK * kN / median : 0;
#else
  (void)device;
  (void)dtype;
  return 0;
#endif
}

}  // namespace chai
