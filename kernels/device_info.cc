#include "kernels/device_info.h"

#include <fstream>

#ifdef CHAI_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace chai {

#ifdef CHAI_WITH_CUDA
int64_t FreeDeviceMemory() {
  size_t free_bytes = 0, total = 0;
  return cudaMemGetInfo(&free_bytes, &total) == cudaSuccess ? static_cast<int64_t>(free_bytes) : 0;
}
int64_t TotalDeviceMemory() {
  size_t free_bytes = 0, total = 0;
  return cudaMemGetInfo(&free_bytes, &total) == cudaSuccess ? static_cast<int64_t>(total) : 0;
}
std::string CurrentDeviceName() {
  int device = 0;
  cudaDeviceProp prop;
  if (cudaGetDevice(&device) != cudaSuccess || cudaGetDeviceProperties(&prop, device) != cudaSuccess) return "cuda";
  return prop.name;
}
#else
int64_t FreeDeviceMemory() { return 0; }
int64_t TotalDeviceMemory() { return 0; }
std::string CurrentDeviceName() { return "cpu"; }
#endif

int64_t AvailableHostMemory() {
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  int64_t kib = 0;
  std::string unit;
  while (meminfo >> key >> kib >> unit) {
    if (key == "MemAvailable:") return kib * 1024;
  }
  return 0;
}

}  // namespace chai
