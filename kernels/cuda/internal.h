// Helpers shared between the CUDA op files; not part of the op interface.
//
// The cuBLASLt handle and its workspace are created once (lazily, on the device current at the
// first call) so that ops never allocate and a decode step can be captured in a CUDA graph.
#ifndef CHAI_KERNELS_CUDA_INTERNAL_H_
#define CHAI_KERNELS_CUDA_INTERNAL_H_

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstddef>

#include "kernels/cuda/cuda_ops.h"

namespace chai::cuda {

// stream.cc
cublasLtHandle_t LtHandle();
struct Workspace {
  void* data;
  size_t bytes;
};
Workspace LtWorkspace();  // used only in stream order on CurrentStream()
int SmCount();            // multiprocessors of the current device (read once)

// elementwise.cu: out[t, n] += bias[n] for out [T, N]. Linear's fallback when cuBLASLt has no
// bias-epilogue kernel for the operands' alignment.
void AddBiasRows(const Tensor& bias, Tensor* out);

}  // namespace chai::cuda

#endif  // CHAI_KERNELS_CUDA_INTERNAL_H_
