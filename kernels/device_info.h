// What the current CUDA device is and how much memory it has free (for sizing the KV cache
// and for benchmark reports). Without CUDA: zero and "cpu".
#ifndef CHAI_KERNELS_DEVICE_INFO_H_
#define CHAI_KERNELS_DEVICE_INFO_H_

#include <cstdint>
#include <string>

namespace chai {

int64_t FreeDeviceMemory();
int64_t TotalDeviceMemory();
std::string CurrentDeviceName();  // e.g. "NVIDIA H100 80GB HBM3"

}  // namespace chai

#endif  // CHAI_KERNELS_DEVICE_INFO_H_
