// Host-to-device copies that do not stop the host: the data is first copied into page-locked
// memory and the copy enqueued on the ops' stream, in order with the ops. DeviceCopy's
// host-to-device copies wait for the device instead (the host buffer is free on return), which is
// right for most uploads but not for a decode step enqueued while the previous one still runs.
//
// The page-locked buffer has two halves, used in turn (`parity`): a copy from one half may still be
// pending while the host fills the other. The caller must not refill a half before the copy made
// from it has run; the engine's pipelined decode (Engine::EnqueueGreedy) holds at most two steps in
// flight and collects the older before it enqueues a third, which orders every copy from a half
// before that half's next use. On the CPU the destination is host memory: a plain copy.
#ifndef CHAI_KERNELS_HOST_UPLOAD_H_
#define CHAI_KERNELS_HOST_UPLOAD_H_

#include <cstddef>

#include "kernels/tensor.h"

namespace chai {

class HostUpload {
 public:
  HostUpload() = default;
  ~HostUpload();
  HostUpload(const HostUpload&) = delete;
  HostUpload& operator=(const HostUpload&) = delete;

  // Copies bytes [0, src.nbytes()) of the host tensor `src` into *dst (same size), through half
  // `parity` (0 or 1) of the staging buffer when *dst is on a GPU.
  void CopyAsync(const Tensor& src, Tensor* dst, int parity);

 private:
  void Free();

  void* data_ = nullptr;  // page-locked, two halves of half_bytes_
  size_t half_bytes_ = 0;
};

}  // namespace chai

#endif  // CHAI_KERNELS_HOST_UPLOAD_H_
