#include "runtime/packed_upload.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace chai {

absl::Status PackedUpload::Send(absl::Span<const Tensor* const> hosts, Device device, absl::Span<Tensor* const> outs,
                                HostUpload* staging, int parity) {
  constexpr int64_t kAlign = 16;  // int32 elements: 64 bytes
  if (hosts.size() != outs.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("PackedUpload: ", hosts.size(), " arrays but ", outs.size(), " views"));
  }
  std::vector<int64_t> lengths(hosts.size()), offsets(hosts.size());
  int64_t total = 0;
  for (size_t i = 0; i < hosts.size(); ++i) {
    if (hosts[i]->dtype() != DType::kI32 || hosts[i]->device() != Device::kCpu) {
      return absl::InvalidArgumentError("PackedUpload: arrays must be int32 host tensors");
    }
    offsets[i] = total;
    lengths[i] = hosts[i]->numel();
    total += (lengths[i] + kAlign - 1) / kAlign * kAlign;
  }
  if (buffer_.defined() && lengths != lengths_) {
    return absl::FailedPreconditionError("PackedUpload: the arrays changed length since the first send");
  }
  Tensor packed = Tensor::Zeros({std::max<int64_t>(total, 1)}, DType::kI32, Device::kCpu);
  for (size_t i = 0; i < hosts.size(); ++i) {
    std::copy_n(hosts[i]->data<int32_t>(), lengths[i], packed.data<int32_t>() + offsets[i]);
  }
  if (buffer_.defined()) {
    if (staging != nullptr) {
      staging->CopyAsync(packed, &buffer_, parity);
    } else {
      CopyTensor(packed, &buffer_);
    }
    return absl::OkStatus();
  }
  buffer_ = device == Device::kCpu ? packed : packed.To(device);
  lengths_ = lengths;
  for (size_t i = 0; i < hosts.size(); ++i) {
    *outs[i] = buffer_.Rows(offsets[i], offsets[i] + lengths[i]).Reshape(hosts[i]->shape());
  }
  return absl::OkStatus();
}

}  // namespace chai
