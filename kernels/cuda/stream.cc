// The process's CUDA stream, cuBLASLt handle and workspace.
//
// The stream is a blocking stream (not cudaStreamNonBlocking): it still synchronises with the
// legacy default stream, so code elsewhere that uses plain cudaMemcpy stays ordered with the
// ops. These objects are deliberately never destroyed: tensors held in statics may be freed
// during exit, after the CUDA runtime has begun to unload.
#include <atomic>
#include <mutex>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/internal.h"

namespace chai::cuda {
namespace {

// 32 MiB: what cuBLAS recommends for Hopper; it lets the heuristic pick split-K kernels.
constexpr size_t kLtWorkspaceBytes = size_t{32} << 20;

}  // namespace

CUstream_st* CurrentStream() {
  static cudaStream_t stream = [] {
    cudaStream_t s;
    CHAI_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamDefault));
    return s;
  }();
  return stream;
}

cublasLtHandle_t LtHandle() {
  static cublasLtHandle_t handle = [] {
    cublasLtHandle_t h;
    CHAI_CUBLAS_CHECK(cublasLtCreate(&h));
    return h;
  }();
  return handle;
}

Workspace LtWorkspace() {
  static Workspace workspace = [] {
    Workspace w{nullptr, kLtWorkspaceBytes};
    // Plain cudaMalloc (not the stream-ordered pool): allocated once, lives forever.
    CHAI_CUDA_CHECK(cudaMalloc(&w.data, w.bytes));
    return w;
  }();
  return workspace;
}

int SmCount() {
  static int count = [] {
    int device = 0, sms = 0;
    CHAI_CUDA_CHECK(cudaGetDevice(&device));
    CHAI_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
    return sms;
  }();
  return count;
}

// Whether the current device has the bulk copy engine and mbarrier transactions kernel 4 uses
// (compute capability 9.0 or newer: decode kernel 4, the L2 bulk prefetches), read once per device.
bool CopyEngineDevice() {
  static std::atomic<int> cached[64];  // 0 unknown, 1 no, 2 yes
  int device = 0;
  CHAI_CUDA_CHECK(cudaGetDevice(&device));
  device = device >= 0 && device < 64 ? device : 63;
  int v = cached[device].load(std::memory_order_relaxed);
  if (v == 0) {
    int major = 0;
    CHAI_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
    v = major >= 9 ? 2 : 1;
    cached[device].store(v, std::memory_order_relaxed);
  }
  return v == 2;
}

}  // namespace chai::cuda
