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

// The fastest of the timed copies, not their median: a floor is a lower bound on a step's time,
// so its denominator is the best rate the memory reached. A median let a slow stretch of the
// measurement raise the floor: on one 4 x H100 host (2026-11-27) rank 0 measured 2484 GB/s in one
// OPT-66B run against 2784-2902 GB/s in three others with the same TPOT, which put that run's
// TPOT at 0.94x "its floor". The first copies warm up (page mapping, clocks) and are not timed.
// The host takes fewer: a memcpy of 256 MiB takes tens of ms, and the CPU numbers are not floors
// anyone targets.
constexpr int kWarmupCopies = 4;
constexpr int kTimedCopies = 24;
constexpr int kHostWarmupCopies = 1;
constexpr int kHostTimedCopies = 6;

double Fastest(const std::vector<double>& seconds) { return *std::min_element(seconds.begin(), seconds.end()); }

double HostCopyBandwidth(size_t bytes) {
  Tensor src = Tensor::Zeros({static_cast<int64_t>(bytes / 4)}, DType::kF32);
  Tensor dst = Tensor::Zeros({static_cast<int64_t>(bytes / 4)}, DType::kF32);
  std::vector<double> times;
  for (int i = 0; i < kHostWarmupCopies + kHostTimedCopies; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    std::memcpy(dst.raw(), src.raw(), src.nbytes());
    if (i >= kHostWarmupCopies) {
      times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
  }
  return 2.0 * src.nbytes() / Fastest(times);
}

#ifdef CHAI_WITH_CUDA
// Two buffers of `bytes`, or of the largest halving of it down to 64 MiB that fits (the KV pool may
// have taken most of the device); false, with the allocation error cleared so that no later
// launch check reports it, when none fits.
bool AllocatePair(size_t* bytes, void** src, void** dst) {
  for (; *bytes >= (size_t{64} << 20); *bytes /= 2) {
    if (cudaMalloc(src, *bytes) == cudaSuccess) {
      if (cudaMalloc(dst, *bytes) == cudaSuccess) return true;
      cudaFree(*src);
    }
    cudaGetLastError();
  }
  return false;
}

double CudaCopyBandwidth(size_t bytes, size_t* measured) {
  void *src = nullptr, *dst = nullptr;
  *measured = 0;
  if (!AllocatePair(&bytes, &src, &dst)) return 0;
  *measured = bytes;
  const double rate = CudaCopyBandwidthOn(dst, src, bytes);
  cudaFree(src);
  cudaFree(dst);
  return rate;
}
#endif

}  // namespace

#ifdef CHAI_WITH_CUDA
double CudaCopyBandwidthOn(void* dst, const void* src, size_t bytes) {
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  std::vector<double> times;
  for (int i = 0; i < kWarmupCopies + kTimedCopies; ++i) {
    cudaEventRecord(start);
    cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice);
    cudaEventRecord(stop);
    cudaEventSynchronize(stop);
    float ms = 0;
    cudaEventElapsedTime(&ms, start, stop);
    if (i >= kWarmupCopies) times.push_back(ms / 1e3);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return 2.0 * bytes / Fastest(times);
}
#endif

double MeasureCopyBandwidth(Device device, size_t bytes, size_t* measured) {
  size_t used = bytes;
#ifdef CHAI_WITH_CUDA
  if (device == Device::kCuda) {
    const double rate = CudaCopyBandwidth(bytes, &used);
    if (measured != nullptr) *measured = used;
    return rate;
  }
#endif
  if (measured != nullptr) *measured = used;
  return HostCopyBandwidth(bytes);
}

}  // namespace chai
