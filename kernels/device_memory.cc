#include "kernels/device_memory.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

#ifdef CHAI_WITH_CUDA
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/cuda_ops.h"
#endif

namespace chai {

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

// Device memory comes from the stream-ordered pool of the current device, in stream order on
// the ops' stream (cuda::CurrentStream()): a tensor freed there is reused by later work on that
// stream without a device-wide synchronisation (cudaFree would synchronise, and could not be
// captured in a graph). The pool keeps freed memory cached (release threshold: unlimited)
// instead of returning it to the driver at every synchronisation. Work on any other stream
// (e.g. a communicator's) must be ordered with the ops' stream before its buffers are freed.
static cudaMemPool_t CachingPool() {
  static cudaMemPool_t pool = [] {
    int device = 0;
    Check(cudaGetDevice(&device), "cudaGetDevice");
    cudaMemPool_t p;
    Check(cudaDeviceGetDefaultMemPool(&p, device), "cudaDeviceGetDefaultMemPool");
    uint64_t threshold = UINT64_MAX;
    Check(cudaMemPoolSetAttribute(p, cudaMemPoolAttrReleaseThreshold, &threshold), "cudaMemPoolSetAttribute");
    return p;
  }();
  return pool;
}

void* DeviceAlloc(size_t bytes) {
  cudaStream_t stream = cuda::CurrentStream();
  const cudaMemPool_t pool = CachingPool();
  void* ptr = nullptr;
  cudaError_t err = cudaMallocAsync(&ptr, bytes == 0 ? 1 : bytes, stream);
  if (err == cudaErrorMemoryAllocation) {
    // Cached blocks of another size may be what is missing: give them back and retry once.
    cudaGetLastError();
    Check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
    Check(cudaMemPoolTrimTo(pool, 0), "cudaMemPoolTrimTo");
    err = cudaMallocAsync(&ptr, bytes == 0 ? 1 : bytes, stream);
  }
  if (err != cudaSuccess) {
    size_t free_bytes = 0, total_bytes = 0;
    cudaMemGetInfo(&free_bytes, &total_bytes);
    std::fprintf(stderr, "chai: fatal: cannot allocate %zu bytes of device memory (%zu of %zu free): %s\n", bytes,
                 free_bytes, total_bytes, cudaGetErrorString(err));
    std::abort();
  }
  return ptr;
}

// Errors are ignored: at process exit the runtime may already be unloading.
void DeviceFree(void* ptr) {
  if (cudaFreeAsync(ptr, cuda::CurrentStream()) != cudaSuccess) cudaGetLastError();
}

// Copies run on the ops' stream, so they are ordered with the ops. Host-to-device and
// device-to-host copies return when done (the host buffer is free to reuse, or holds the data);
// device-to-device copies are only stream-ordered, like an op (and can be graph-captured).
void DeviceCopy(void* dst, const void* src, size_t bytes, CopyKind kind) {
  if (kind == CopyKind::kHostToHost) {
    std::memcpy(dst, src, bytes);
    return;
  }
  if (bytes == 0) return;
  cudaStream_t stream = cuda::CurrentStream();
  cudaMemcpyKind k = kind == CopyKind::kHostToDevice   ? cudaMemcpyHostToDevice
                     : kind == CopyKind::kDeviceToHost ? cudaMemcpyDeviceToHost
                                                       : cudaMemcpyDeviceToDevice;
  Check(cudaMemcpyAsync(dst, src, bytes, k, stream), "cudaMemcpyAsync");
  if (kind != CopyKind::kDeviceToDevice) Check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
}
#else
[[noreturn]] static void Die(const char* what) {
  std::fprintf(stderr, "chai: fatal: %s\n", what);
  std::abort();
}

bool CudaAvailable() { return false; }
void* DeviceAlloc(size_t) { Die("this build has no CUDA backend"); }
void DeviceFree(void*) {}
void DeviceCopy(void* dst, const void* src, size_t bytes, CopyKind kind) {
  if (kind != CopyKind::kHostToHost) Die("this build has no CUDA backend");
  std::memcpy(dst, src, bytes);
}
#endif

}  // namespace chai
