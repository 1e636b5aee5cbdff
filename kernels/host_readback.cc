#include "kernels/host_readback.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

#ifdef CHAI_WITH_CUDA
#include <cuda_runtime.h>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_ops.h"
#endif

namespace chai {

// Errors are ignored here: at exit the CUDA runtime may already be unloading.
HostReadback::~HostReadback() {
#ifdef CHAI_WITH_CUDA
  if (in_flight_) cudaEventSynchronize(static_cast<cudaEvent_t>(event_));
  if (event_ != nullptr) cudaEventDestroy(static_cast<cudaEvent_t>(event_));
#endif
  Free();
}

void HostReadback::Free() {
  if (data_ == nullptr) return;
#ifdef CHAI_WITH_CUDA
  if (pinned_) {
    cudaFreeHost(data_);
    data_ = nullptr;
    return;
  }
#endif
  std::free(data_);
  data_ = nullptr;
}

void HostReadback::Reserve(size_t bytes, Device device) {
  const bool pinned = device == Device::kCuda;
  if (data_ != nullptr && bytes <= bytes_ && pinned == pinned_) return;
  Wait();
  Free();
  bytes_ = bytes == 0 ? 1 : bytes;
  pinned_ = pinned;
  if (pinned) {
#ifdef CHAI_WITH_CUDA
    CHAI_CUDA_CHECK(cudaMallocHost(&data_, bytes_));
    return;
#else
    std::fprintf(stderr, "chai: fatal: this build has no CUDA backend\n");
    std::abort();
#endif
  }
  data_ = std::malloc(bytes_);
  if (data_ == nullptr) {
    std::fprintf(stderr, "chai: fatal: out of host memory allocating %zu bytes\n", bytes_);
    std::abort();
  }
}

void HostReadback::CopyAsync(const Tensor& src, size_t offset) {
  if (offset + src.nbytes() > bytes_) {
    std::fprintf(stderr, "chai: internal error: HostReadback copy of %zu bytes at %zu exceeds %zu\n", src.nbytes(),
                 offset, bytes_);
    std::abort();
  }
  char* dst = static_cast<char*>(data_) + offset;
  if (src.device() == Device::kCpu) {
    std::memcpy(dst, src.raw(), src.nbytes());
    return;
  }
#ifdef CHAI_WITH_CUDA
  if (!pinned_) {
    std::fprintf(stderr, "chai: internal error: HostReadback of device data into unpinned memory\n");
    std::abort();
  }
  cudaStream_t stream = cuda::CurrentStream();
  if (event_ == nullptr) {
    cudaEvent_t event;
    CHAI_CUDA_CHECK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
    event_ = event;
  }
  CHAI_CUDA_CHECK(cudaMemcpyAsync(dst, src.raw(), src.nbytes(), cudaMemcpyDeviceToHost, stream));
  CHAI_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(event_), stream));
  in_flight_ = true;
#endif
}

void HostReadback::Wait() {
  if (!in_flight_) return;
#ifdef CHAI_WITH_CUDA
  CHAI_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(event_)));
#endif
  in_flight_ = false;
}

}  // namespace chai
