#include "kernels/device_memory.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

#ifdef CHAI_WITH_CUDA
#include <cuda_runtime.h>

#include <cstdint>
#include <mutex>
#include <unordered_set>
#include <vector>

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

// Stream capture (CUDA graphs) on the ops' stream. Inside a capture, cudaMallocAsync makes a
// graph allocation, and cudaFreeAsync may only free graph allocations (it becomes a free node);
// freeing older memory there is an error that would invalidate the capture. So frees of memory
// that predates the capture are deferred until the capture is over.
struct CaptureTracking {
  std::mutex mu;
  std::unordered_set<void*> graph_allocs;  // allocated while capturing, not yet freed
  std::vector<void*> deferred;             // freed while capturing, allocated before it
};

static CaptureTracking& Tracking() {
  static auto* tracking = new CaptureTracking;  // never destroyed: frees may run at exit
  return *tracking;
}

static bool Capturing(cudaStream_t stream) {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(stream, &status) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return status != cudaStreamCaptureStatusNone;
}

// Frees what was deferred during a capture (the caller holds the lock; not capturing).
static void FlushDeferred(CaptureTracking& t, cudaStream_t stream) {
  for (void* p : t.deferred) {
    if (cudaFreeAsync(p, stream) != cudaSuccess) cudaGetLastError();
  }
  t.deferred.clear();
}

void* DeviceAlloc(size_t bytes) {
  cudaStream_t stream = cuda::CurrentStream();
  const cudaMemPool_t pool = CachingPool();
  const bool capturing = Capturing(stream);
  void* ptr = nullptr;
  cudaError_t err = cudaMallocAsync(&ptr, bytes == 0 ? 1 : bytes, stream);
  if (err == cudaErrorMemoryAllocation && !capturing) {
    // Cached blocks of another size may be what is missing: give them back and retry once.
    cudaGetLastError();
    Check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
    Check(cudaMemPoolTrimTo(pool, 0), "cudaMemPoolTrimTo");
    err = cudaMallocAsync(&ptr, bytes == 0 ? 1 : bytes, stream);
  }
  if (err != cudaSuccess) {
    size_t free_bytes = 0, total_bytes = 0;
    cudaMemGetInfo(&free_bytes, &total_bytes);
    std::fprintf(stderr, "chai: fatal: cannot allocate %zu bytes of device memory%s (%zu of %zu free): %s\n", bytes,
                 capturing ? " during stream capture" : "", free_bytes, total_bytes, cudaGetErrorString(err));
    std::abort();
  }
  CaptureTracking& t = Tracking();
  std::lock_guard<std::mutex> lock(t.mu);
  if (capturing) {
    t.graph_allocs.insert(ptr);
  } else if (!t.deferred.empty()) {
    FlushDeferred(t, stream);
  }
  return ptr;
}

// Errors are ignored: at process exit the runtime may already be unloading.
void DeviceFree(void* ptr) {
  cudaStream_t stream = cuda::CurrentStream();
  const bool capturing = Capturing(stream);
  CaptureTracking& t = Tracking();
  std::lock_guard<std::mutex> lock(t.mu);
  const bool graph_alloc = t.graph_allocs.erase(ptr) > 0;
  if (capturing && !graph_alloc) {
    t.deferred.push_back(ptr);
    return;
  }
  if (!capturing && !t.deferred.empty()) FlushDeferred(t, stream);
  if (cudaFreeAsync(ptr, stream) != cudaSuccess) cudaGetLastError();
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
