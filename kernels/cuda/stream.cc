// The process's CUDA stream, cuBLASLt handle and workspace.
//
// The stream is a blocking stream (not cudaStreamNonBlocking): it still synchronises with the
// legacy default stream, so code elsewhere that uses plain cudaMemcpy stays ordered with the
// ops. These objects are deliberately never destroyed: tensors held in statics may be freed
// during exit, after the CUDA runtime has begun to unload.
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

}  // namespace chai::cuda
