// Several small int32 host arrays sent to a device as one buffer, in one copy.
//
// A decode step's metadata is seven arrays of a few entries each, and on CUDA every
// host-to-device copy waits for the device (DeviceCopy), so seven copies were seven round trips
// per step. The views handed out stay at the same addresses while later sends keep the same
// lengths, as a recorded graph needs; each array starts on a 64-byte boundary of the buffer, as
// an allocation of its own would.
#ifndef CHAI_RUNTIME_PACKED_UPLOAD_H_
#define CHAI_RUNTIME_PACKED_UPLOAD_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "kernels/host_upload.h"
#include "kernels/tensor.h"

namespace chai {

class PackedUpload {
 public:
  // First call: allocates the buffer on `device` (on the CPU the packed host buffer is the
  // buffer) and sets *outs[i] to a view of it holding hosts[i] (1-D int32). Later calls copy into
  // the same buffer and leave the views where they are; they must bring arrays of the lengths of
  // the first call (FailedPrecondition otherwise, nothing sent).
  // With `staging` (a later call only), the copy does not wait for the device: it goes through
  // half `parity` of the staging buffer (kernels/host_upload.h says when a half may be reused).
  absl::Status Send(absl::Span<const Tensor* const> hosts, Device device, absl::Span<Tensor* const> outs,
                    HostUpload* staging = nullptr, int parity = 0);

  bool sent() const { return buffer_.defined(); }

 private:
  Tensor buffer_;
  std::vector<int64_t> lengths_;
};

}  // namespace chai

#endif  // CHAI_RUNTIME_PACKED_UPLOAD_H_
