// fp16 Linear (cuBLASLt through ops::Linear) at the LLaMA-7B projection shapes, next to the
// device's measured copy bandwidth, which is the floor for the memory-bound decode GEMMs.
//
//   gemm_bench [samples=20]
//
// Each sample is one CUDA-event-timed pass over several weight copies (together well past the
// L2 cache, so decode GEMMs stream their weights from DRAM as in a real decode step); the
// table reports the median time per call. Inputs are random (never zeros). Bytes count every
// operand read once and the output written once; copy bandwidth counts read + write.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "kernels/device_memory.h"
#include "kernels/ops.h"
#include "kernels/tensor.h"

#ifdef CHAI_WITH_CUDA
#include <cuda_runtime.h>

#include "kernels/cuda/cuda_ops.h"

namespace chai {
namespace {

void Check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) {
    std::fprintf(stderr, "gemm_bench: %s: %s\n", what, cudaGetErrorString(err));
    std::exit(1);
  }
}

Tensor RandomHalf(std::vector<int64_t> shape, float scale, std::mt19937& rng) {
  Tensor host = Tensor::Empty(shape, DType::kF32);
  std::normal_distribution<float> dist(0.f, scale);
  for (int64_t i = 0; i < host.numel(); ++i) host.data<float>()[i] = dist(rng);
  return host.Cast(DType::kF16).To(Device::kCuda);
}

// Median over `samples` of the event time of fn() in milliseconds, after `warmup` calls.
template <typename F>
double MedianMs(int samples, int warmup, F&& fn) {
  cudaStream_t stream = cuda::CurrentStream();
  cudaEvent_t start, stop;
  Check(cudaEventCreate(&start), "cudaEventCreate");
  Check(cudaEventCreate(&stop), "cudaEventCreate");
  for (int i = 0; i < warmup; ++i) fn();
  std::vector<double> times;
  for (int i = 0; i < samples; ++i) {
    Check(cudaEventRecord(start, stream), "cudaEventRecord");
    fn();
    Check(cudaEventRecord(stop, stream), "cudaEventRecord");
    Check(cudaEventSynchronize(stop), "cudaEventSynchronize");
    float ms = 0;
    Check(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
    times.push_back(ms);
  }
  Check(cudaGetLastError(), "kernel launch");
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

// Device-to-device copy of 1 GiB; returns GB/s counting bytes read plus bytes written.
double CopyBandwidth(int samples) {
  const size_t bytes = size_t{1} << 30;
  void *src = nullptr, *dst = nullptr;
  Check(cudaMalloc(&src, bytes), "cudaMalloc");
  Check(cudaMalloc(&dst, bytes), "cudaMalloc");
  Check(cudaMemsetAsync(src, 0x3C, bytes, cuda::CurrentStream()), "cudaMemsetAsync");
  const double ms = MedianMs(samples, 3, [&] {
    Check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, cuda::CurrentStream()), "cudaMemcpyAsync");
  });
  cudaFree(src);
  cudaFree(dst);
  return 2.0 * bytes / (ms * 1e-3) / 1e9;
}

struct Shape {
  int64_t t, k, n;
};

int Run(int samples) {
  cudaDeviceProp prop;
  int device = 0;
  Check(cudaGetDevice(&device), "cudaGetDevice");
  Check(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
  std::printf("device: %s (%d SMs, L2 %d MiB, %.0f GiB)\n", prop.name, prop.multiProcessorCount, prop.l2CacheSize >> 20,
              prop.totalGlobalMem / double(1 << 30));

  const double copy_gbs = CopyBandwidth(samples);
  std::printf("copy bandwidth (device-to-device, 1 GiB, read + write): %.0f GB/s\n\n", copy_gbs);

  std::mt19937 rng(7);
  const std::vector<Shape> shapes = {{1, 4096, 4096}, {1, 4096, 11008}, {2048, 4096, 4096}};
  std::printf("%-24s %7s %11s %9s %9s %9s\n", "fp16 Linear [T,K]x[K->N]", "copies", "median_us", "TFLOP/s", "GB/s",
              "%copyBW");
  for (const Shape& s : shapes) {
    const double weight_bytes = 2.0 * s.n * s.k;
    // Enough weight copies to exceed L2 several times over, so every call reads DRAM.
    const int copies = std::max(2, static_cast<int>(4.0 * prop.l2CacheSize / weight_bytes) + 1);
    std::vector<Tensor> weights, xs, outs;
    for (int c = 0; c < copies; ++c) {
      weights.push_back(RandomHalf({s.n, s.k}, 1.f / 64, rng));
      xs.push_back(RandomHalf({s.t, s.k}, 1.f, rng));
      outs.push_back(Tensor::Empty({s.t, s.n}, DType::kF16, Device::kCuda));
    }
    const double ms = MedianMs(samples, 3,
                               [&] {
                                 for (int c = 0; c < copies; ++c) ops::Linear(xs[c], weights[c], Tensor(), &outs[c]);
                               }) /
                      copies;
    const double flops = 2.0 * s.t * s.k * s.n;
    const double bytes = 2.0 * (s.t * s.k + s.n * s.k + s.t * s.n);
    const double gbs = bytes / (ms * 1e-3) / 1e9;
    char name[64];
    std::snprintf(name, sizeof(name), "[%lld,%lld]x[%lld->%lld]", static_cast<long long>(s.t),
                  static_cast<long long>(s.k), static_cast<long long>(s.k), static_cast<long long>(s.n));
    std::printf("%-24s %7d %11.1f %9.2f %9.0f %8.1f%%\n", name, copies, ms * 1e3, flops / (ms * 1e-3) / 1e12, gbs,
                100.0 * gbs / copy_gbs);
  }
  Check(cudaStreamSynchronize(cuda::CurrentStream()), "cudaStreamSynchronize");
  return 0;
}

}  // namespace
}  // namespace chai
#endif  // CHAI_WITH_CUDA

int main(int argc, char** argv) {
#ifdef CHAI_WITH_CUDA
  if (!chai::CudaAvailable()) {
    std::printf("gemm_bench: no CUDA device is visible\n");
    return 0;
  }
  const int samples = argc > 1 ? std::max(1, std::atoi(argv[1])) : 20;
  return chai::Run(samples);
#else
  (void)argc;
  (void)argv;
  std::printf("gemm_bench: no CUDA (this build has no CUDA backend)\n");
  return 0;
#endif
}
