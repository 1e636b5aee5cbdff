#include "kernels/bandwidth.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <vector>

#ifdef CHAI_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace chai {
namespace {

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

double HostCopyBandwidth(size_t bytes) {
  Tensor src = Tensor::Zeros({static_cast<int64_t>(bytes / 4)}, DType::kF32);
  Tensor dst = Tensor::Zeros({static_cast<int64_t>(bytes / 4)}, DType::kF32);
  std::vector<double> times;
  for (int i = 0; i < 7; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    std::memcpy(dst.raw(), src.raw(), src.nbytes());
    times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return 2.0 * src.nbytes() / Median(times);
}

#ifdef CHAI_WITH_CUDA
double CudaCopyBandwidth(size_t bytes) {
  void *src = nullptr, *dst = nullptr;
  if (cudaMalloc(&src, bytes) != cudaSuccess || cudaMalloc(&dst, bytes) != cudaSuccess) return 0;
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  std::vector<double> times;
  for (int i = 0; i < 12; ++i) {
    cudaEventRecord(start);
    cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice);
    cudaEventRecord(stop);
    cudaEventSynchronize(stop);
    float ms = 0;
    cudaEventElapsedTime(&ms, start, stop);
    if (i >= 2) times.push_back(ms / 1e3);  // first copies warm up
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  cudaFree(src);
  cudaFree(dst);
  return 2.0 * bytes / Median(times);
}
#endif

}  // namespace

double MeasureCopyBandwidth(Device device, size_t bytes) {
#ifdef CHAI_WITH_CUDA
  if (device == Device::kCuda) return CudaCopyBandwidth(bytes);
#endif
  return HostCopyBandwidth(bytes);
}

}  // namespace chai
