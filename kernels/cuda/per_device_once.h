// A host function run once per CUDA device: kernel attributes (the dynamic shared memory limit)
// are per device, and ranks may be threads of one process on different devices.
#ifndef CHAI_KERNELS_CUDA_PER_DEVICE_ONCE_H_
#define CHAI_KERNELS_CUDA_PER_DEVICE_ONCE_H_

#include <cuda_runtime.h>

#include <mutex>
#include <utility>

#include "kernels/cuda/cuda_check.h"

namespace chai::cuda {

// Runs a host function once per CUDA device (kernel attributes are per device, and ranks may
// be threads of one process on different devices).
class PerDeviceOnce {
 public:
  template <typename F>
  void Run(F&& f) {
    int device = 0;
    CHAI_CUDA_CHECK(cudaGetDevice(&device));
    if (device < 0 || device >= kDevices) device = kDevices - 1;
    std::call_once(flags_[device], std::forward<F>(f));
  }

 private:
  static constexpr int kDevices = 64;
  std::once_flag flags_[kDevices];
};

}  // namespace chai::cuda

#endif  // CHAI_KERNELS_CUDA_PER_DEVICE_ONCE_H_
