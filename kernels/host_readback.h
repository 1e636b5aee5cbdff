// Device-to-host copies that do not stop the host: into page-locked memory, in stream order on
// the ops' stream, and waited for only when the host needs the data (for example after a step's
// own synchronisation, when waiting costs nothing). Copies from host tensors are immediate.
#ifndef CHAI_KERNELS_HOST_READBACK_H_
#define CHAI_KERNELS_HOST_READBACK_H_

#include <cstddef>

#include "kernels/tensor.h"

namespace chai {

class HostReadback {
 public:
  HostReadback() = default;
  ~HostReadback();
  HostReadback(const HostReadback&) = delete;
  HostReadback& operator=(const HostReadback&) = delete;

  // Room for `bytes` of data copied from `device` (page-locked for kCuda). Reallocates only when
  // it must, after waiting for copies in flight.
  void Reserve(size_t bytes, Device device);
  // Enqueues a copy of `src` to byte `offset` of the buffer (within the reserved size).
  void CopyAsync(const Tensor& src, size_t offset);
  // Blocks until every copy enqueued so far has landed; nothing to wait for on the CPU.
  void Wait();

  const void* data() const { return data_; }
  size_t size() const { return bytes_; }

 private:
  void Free();

  void* data_ = nullptr;
  size_t bytes_ = 0;
  bool pinned_ = false;
  void* event_ = nullptr;  // cudaEvent_t recorded after the last copy
  bool in_flight_ = false;
};

}  // namespace chai

#endif  // CHAI_KERNELS_HOST_READBACK_H_
