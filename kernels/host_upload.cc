#include "kernels/host_upload.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

#ifdef CHAI_WITH_CUDA
#include <cuda_runtime.h>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_ops.h"
#endif

namespace chai {

HostUpload::~HostUpload() { Free(); }

// Copies still pending from the buffer finish first. Errors are ignored: at exit the CUDA runtime
// may already be unloading.
void HostUpload::Free() {
#ifdef CHAI_WITH_CUDA
  if (data_ != nullptr) {
    cudaStreamSynchronize(cuda::CurrentStream());
    cudaFreeHost(data_);
  }
#endif
  data_ = nullptr;
  half_bytes_ = 0;
}

void HostUpload::CopyAsync(const Tensor& src, Tensor* dst, int parity) {
  const size_t bytes = src.nbytes();
  if (src.device() != Device::kCpu || dst->nbytes() != bytes || (parity != 0 && parity != 1)) {
    std::fprintf(stderr, "chai: internal error: HostUpload of %zu host bytes into %zu (half %d)\n", bytes,
                 dst->nbytes(), parity);
    std::abort();
  }
  if (dst->device() == Device::kCpu) {
    std::memcpy(dst->raw(), src.raw(), bytes);
    return;
  }
#ifdef CHAI_WITH_CUDA
  if (bytes > half_bytes_) {
    // Waits for the device: only when a larger upload than any before comes. Halves grow in powers
    // of two from 4 KB, so that uploads of varying sizes (block-table entries) rarely wait.
    Free();
    size_t half = 4096;
    while (half < bytes) half *= 2;
    CHAI_CUDA_CHECK(cudaMallocHost(&data_, 2 * half));
    half_bytes_ = half;
  }
  char* half = static_cast<char*>(data_) + parity * half_bytes_;
  std::memcpy(half, src.raw(), bytes);
  CHAI_CUDA_CHECK(cudaMemcpyAsync(dst->raw(), half, bytes, cudaMemcpyHostToDevice, cuda::CurrentStream()));
#else
  std::fprintf(stderr, "chai: fatal: this build has no CUDA backend\n");
  std::abort();
#endif
}

}  // namespace chai
