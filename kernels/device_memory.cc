#include "kernels/device_memory.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

#ifdef CHAI_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace chai {

[[noreturn]] static void Die(const char* what) {
  std::fprintf(stderr, "chai: fatal: %s\n", what);
  std::abort();
}

#ifdef CHAI_WITH_CUDA
static void Check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) {
    std::fprintf(stderr, "chai: fatal: %s: %s\n", what, cudaGetErrorString(err));
    std::abort();
  }
}

bool CudaAvailable() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
}

void* DeviceAlloc(size_t bytes) {
  void* ptr = nullptr;
  Check(cudaMalloc(&ptr, bytes == 0 ? 1 : bytes), "cudaMalloc");
  return ptr;
}

void DeviceFree(void* ptr) { cudaFree(ptr); }

void DeviceCopy(void* dst, const void* src, size_t bytes, CopyKind kind) {
  if (kind == CopyKind::kHostToHost) {
    std::memcpy(dst, src, bytes);
    return;
  }
  cudaMemcpyKind k = kind == CopyKind::kHostToDevice   ? cudaMemcpyHostToDevice
                     : kind == CopyKind::kDeviceToHost ? cudaMemcpyDeviceToHost
                                                       : cudaMemcpyDeviceToDevice;
  Check(cudaMemcpy(dst, src, bytes, k), "cudaMemcpy");
}
#else
bool CudaAvailable() { return false; }
void* DeviceAlloc(size_t) { Die("this build has no CUDA backend"); }
void DeviceFree(void*) {}
void DeviceCopy(void* dst, const void* src, size_t bytes, CopyKind kind) {
  if (kind != CopyKind::kHostToHost) Die("this build has no CUDA backend");
  std::memcpy(dst, src, bytes);
}
#endif

}  // namespace chai
