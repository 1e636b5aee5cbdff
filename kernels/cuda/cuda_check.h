// Error checks for CUDA runtime and cuBLAS(Lt) calls. A failing call inside an op is a
// programmer error or a broken device (the dispatcher has validated the operands), so these
// abort with the failing expression, file and line rather than return a status.
#ifndef CHAI_KERNELS_CUDA_CUDA_CHECK_H_
#define CHAI_KERNELS_CUDA_CUDA_CHECK_H_

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>

namespace chai::cuda::internal {

[[noreturn]] inline void CudaFail(const char* expr, const char* what, const char* file, int line) {
  std::fprintf(stderr, "chai: fatal CUDA error: %s: %s (%s:%d)\n", expr, what, file, line);
  std::abort();
}

}  // namespace chai::cuda::internal

// Aborts when a CUDA runtime call fails.
#define CHAI_CUDA_CHECK(expr)                                                                     \
  do {                                                                                            \
    const cudaError_t chai_err_ = (expr);                                                         \
    if (chai_err_ != cudaSuccess) {                                                               \
      ::chai::cuda::internal::CudaFail(#expr, cudaGetErrorString(chai_err_), __FILE__, __LINE__); \
    }                                                                                             \
  } while (0)

// Aborts when a cuBLAS / cuBLASLt call fails.
#define CHAI_CUBLAS_CHECK(expr)                                                                     \
  do {                                                                                              \
    const cublasStatus_t chai_st_ = (expr);                                                         \
    if (chai_st_ != CUBLAS_STATUS_SUCCESS) {                                                        \
      ::chai::cuda::internal::CudaFail(#expr, cublasGetStatusString(chai_st_), __FILE__, __LINE__); \
    }                                                                                               \
  } while (0)

// Checks the launch just issued (bad configuration, missing kernel image). Asynchronous faults
// surface at the next synchronising call; it does not synchronise, so graphs can capture it.
#define CHAI_CUDA_CHECK_LAUNCH() CHAI_CUDA_CHECK(cudaGetLastError())

#endif  // CHAI_KERNELS_CUDA_CUDA_CHECK_H_
