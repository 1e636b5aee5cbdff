// Raw device memory: allocation and copies. The CPU-only build has no device memory;
// asking for it there is a programmer error (the CLI rejects --device cuda first).
#ifndef CHAI_KERNELS_DEVICE_MEMORY_H_
#define CHAI_KERNELS_DEVICE_MEMORY_H_

#include <cstddef>

namespace chai {

bool CudaAvailable();  // built with CUDA and at least one device visible
void* DeviceAlloc(size_t bytes);
void DeviceFree(void* ptr);
enum class CopyKind { kHostToHost, kHostToDevice, kDeviceToHost, kDeviceToDevice };
void DeviceCopy(void* dst, const void* src, size_t bytes, CopyKind kind);

}  // namespace chai

#endif  // CHAI_KERNELS_DEVICE_MEMORY_H_
