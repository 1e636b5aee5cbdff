#include "kernels/tensor.h"

#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kernels/cpu/parallel_for.h"
#include "kernels/device_memory.h"

namespace chai {

const char* DeviceName(Device device) { return device == Device::kCpu ? "cpu" : "cuda"; }

int64_t Tensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape_) n *= d;
  return n;
}

std::string Tensor::ShapeString() const {
  return absl::StrCat("[", absl::StrJoin(shape_, ", "), "] ", DTypeName(dtype_));
}

Tensor Tensor::Empty(std::vector<int64_t> shape, DType dtype, Device device) {
  Tensor t;
  t.shape_ = std::move(shape);
  t.dtype_ = dtype;
  t.device_ = device;
  size_t bytes = t.nbytes();
  if (device == Device::kCpu) {
    // 64-byte alignment keeps vector loads aligned; never zero bytes so data_ is non-null.
    size_t padded = ((bytes == 0 ? 1 : bytes) + 63) / 64 * 64;
    void* p = std::aligned_alloc(64, padded);
    if (p == nullptr) {
      std::fprintf(stderr, "chai: fatal: out of host memory allocating %zu bytes\n", bytes);
      std::abort();
    }
    t.owner_ = std::shared_ptr<void>(p, [](void* q) { std::free(q); });
  } else {
    void* p = DeviceAlloc(bytes);
    t.owner_ = std::shared_ptr<void>(p, [](void* q) { DeviceFree(q); });
  }
  t.data_ = t.owner_.get();
  return t;
}

Tensor Tensor::Zeros(std::vector<int64_t> shape, DType dtype, Device device) {
  Tensor t = Empty(std::move(shape), dtype, device);
  if (device == Device::kCpu) {
    std::memset(t.data_, 0, t.nbytes());
  } else {
    std::vector<char> zeros(t.nbytes(), 0);
    DeviceCopy(t.data_, zeros.data(), t.nbytes(), CopyKind::kHostToDevice);
  }
  return t;
}

Tensor Tensor::FromFloats(absl::Span<const float> values, std::vector<int64_t> shape) {
  Tensor t = Empty(std::move(shape), DType::kF32);
  std::memcpy(t.data_, values.data(), std::min(values.size() * 4, t.nbytes()));
  return t;
}

Tensor Tensor::FromInts(absl::Span<const int32_t> values, std::vector<int64_t> shape) {
  Tensor t = Empty(std::move(shape), DType::kI32);
  std::memcpy(t.data_, values.data(), std::min(values.size() * 4, t.nbytes()));
  return t;
}

Tensor Tensor::Wrap(void* data, std::vector<int64_t> shape, DType dtype, Device device,
                    std::shared_ptr<void> owner) {
  Tensor t;
  t.owner_ = std::move(owner);
  t.data_ = data;
  t.shape_ = std::move(shape);
  t.dtype_ = dtype;
  t.device_ = device;
  return t;
}

Tensor Tensor::Rows(int64_t begin, int64_t end) const {
  Tensor t = *this;
  t.shape_[0] = end - begin;
  t.data_ = static_cast<char*>(data_) + begin * (nbytes() / (shape_[0] ? shape_[0] : 1));
  return t;
}

Tensor Tensor::Reshape(std::vector<int64_t> shape) const {
  Tensor t = *this;
  t.shape_ = std::move(shape);
  return t;
}

static CopyKind KindOf(Device from, Device to) {
  if (from == Device::kCpu) return to == Device::kCpu ? CopyKind::kHostToHost : CopyKind::kHostToDevice;
  return to == Device::kCpu ? CopyKind::kDeviceToHost : CopyKind::kDeviceToDevice;
}

void CopyTensor(const Tensor& src, Tensor* dst) {
  DeviceCopy(dst->raw(), src.raw(), src.nbytes(), KindOf(src.device(), dst->device()));
}

Tensor Tensor::Clone() const { return To(device_); }

Tensor Tensor::To(Device device) const {
  Tensor t = Empty(shape_, dtype_, device);
  CopyTensor(*this, &t);
  return t;
}

Tensor Tensor::Cast(DType dtype) const {
  if (dtype == dtype_) return *this;
  Tensor host = device_ == Device::kCpu ? *this : To(Device::kCpu);
  Tensor t = Empty(shape_, dtype, Device::kCpu);
  // Large casts (weights converted at load: 16.5 G elements per rank for OPT-66B at TP=4) are
  // split over the thread pool; small ones run inline.
  const size_t in_size = DTypeSize(dtype_), out_size = DTypeSize(dtype);
  const char* src = static_cast<const char*>(host.data_);
  char* dst = static_cast<char*>(t.data_);
  cpu::ParallelFor(numel(), int64_t{1} << 20, [&](int64_t begin, int64_t end) {
    ConvertFloats(src + begin * in_size, dtype_, dst + begin * out_size, dtype, static_cast<size_t>(end - begin));
  });
  return t;
}

std::vector<float> Tensor::ToFloats() const {
  Tensor host = Cast(DType::kF32);
  if (host.device() != Device::kCpu) host = host.To(Device::kCpu);
  const float* p = host.data<float>();
  return std::vector<float>(p, p + numel());
}

}  // namespace chai
