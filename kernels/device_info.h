// What the current CUDA device is and how much memory it has free (for sizing the KV cache
// and for benchmark reports; without CUDA: zero and "cpu"), and how much memory the host has
// available.
#ifndef CHAI_KERNELS_DEVICE_INFO_H_
#define CHAI_KERNELS_DEVICE_INFO_H_

#include <cstdint>
#include <string>

namespace chai {

int64_t FreeDeviceMemory();
int64_t TotalDeviceMemory();
std::string CurrentDeviceName();  // e.g. "NVIDIA H100 80GB HBM3"

// The memory new allocations can take on this host without swapping (MemAvailable of
// /proc/meminfo), in bytes; 0 where that is not known.
int64_t AvailableHostMemory();

}  // namespace chai

#endif  // CHAI_KERNELS_DEVICE_INFO_H_
