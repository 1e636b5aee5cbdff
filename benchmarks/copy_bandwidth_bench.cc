// How much does the measured copy bandwidth, the floor's denominator, move within one process?
//
// Why (issue 8): OPT-66B at TP = 4 on 4 x H200 held its TPOT within 0.3% over runs while the
// copy bandwidth each run measured (MeasureCopyBandwidth, 256 MiB, the fastest of 24 copies)
// spread 3974-4124 GB/s, within one process too, so "TPOT over its floor" moved by 0.04 with
// nothing else changing. This driver repeats the measurement in one process: through
// MeasureCopyBandwidth (fresh buffers every call, as the bench does) at 256 MiB and 1 GiB, and, on
// CUDA, the same timing on one pair of buffers kept for every round. If the kept pair is steady
// where fresh ones are not, the spread is where the buffers land, not the time they are copied.
//
// Usage: copy_bandwidth_bench [--rounds 12] [--device cpu|cuda] (cuda when built with it).
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "kernels/bandwidth.h"

#ifdef CHAI_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace {

void PrintSpread(const char* name, std::vector<double> gbs) {
  std::sort(gbs.begin(), gbs.end());
  std::printf("%s: min %.1f, median %.1f, max %.1f GB/s (max / min %.3f)\n", name, gbs.front(), gbs[gbs.size() / 2],
              gbs.back(), gbs.back() / gbs.front());
}

}  // namespace

int main(int argc, char** argv) {
  int rounds = 12;
#ifdef CHAI_WITH_CUDA
  chai::Device device = chai::Device::kCuda;
#else
  chai::Device device = chai::Device::kCpu;
#endif
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : nullptr;
    if (arg == "--rounds" && v != nullptr && std::atoi(v) >= 1 && std::atoi(v) <= 1000) {
      rounds = std::atoi(v), ++i;
    } else if (arg == "--device" && v != nullptr && (std::string(v) == "cpu" || std::string(v) == "cuda")) {
      device = std::string(v) == "cpu" ? chai::Device::kCpu : chai::Device::kCuda, ++i;
    } else {
      std::fprintf(stderr, "usage: copy_bandwidth_bench [--rounds 1..1000] [--device cpu|cuda]\n");
      return 2;
    }
  }
  const size_t small = size_t{1} << 28, large = size_t{1} << 30;
  const bool cuda = device == chai::Device::kCuda;
#ifdef CHAI_WITH_CUDA
  int count = 0;
  if (cuda && (cudaGetDeviceCount(&count) != cudaSuccess || count == 0)) {
    std::fprintf(stderr, "copy_bandwidth_bench: no CUDA device is visible\n");
    return 1;
  }
  void *src = nullptr, *dst = nullptr;
  if (cuda && (cudaMalloc(&src, small) != cudaSuccess || cudaMalloc(&dst, small) != cudaSuccess)) {
    std::fprintf(stderr, "copy_bandwidth_bench: cannot allocate 2 x 256 MiB on the device\n");
    return 1;
  }
#else
  if (cuda) {
    std::fprintf(stderr, "copy_bandwidth_bench: this build has no CUDA backend\n");
    return 1;
  }
#endif
  std::printf("copy bandwidth (read + write), GB/s, %s, %d rounds in one process\n", cuda ? "cuda" : "cpu", rounds);
  std::printf("| round | 256 MiB, fresh buffers | 1 GiB, fresh buffers |%s\n|---:|---:|---:|%s\n",
              cuda ? " 256 MiB, kept buffers |" : "", cuda ? "---:|" : "");
  std::vector<double> fresh_small, fresh_large, kept;
  for (int r = 0; r < rounds; ++r) {
    fresh_small.push_back(chai::MeasureCopyBandwidth(device, small) / 1e9);
    fresh_large.push_back(chai::MeasureCopyBandwidth(device, large) / 1e9);
    std::printf("| %d | %.1f | %.1f |", r + 1, fresh_small.back(), fresh_large.back());
#ifdef CHAI_WITH_CUDA
    if (cuda) {
      kept.push_back(chai::CudaCopyBandwidthOn(dst, src, small) / 1e9);
      std::printf(" %.1f |", kept.back());
    }
#endif
    std::printf("\n");
  }
  PrintSpread("256 MiB, fresh buffers", fresh_small);
  PrintSpread("1 GiB, fresh buffers", fresh_large);
  if (!kept.empty()) PrintSpread("256 MiB, kept buffers", kept);
#ifdef CHAI_WITH_CUDA
  if (cuda) {
    cudaFree(src);
    cudaFree(dst);
  }
#endif
  return 0;
}
