// Tensor: a typed, shaped view of a reference-counted buffer on one device.
//
// Views share storage (slicing rows of a weight costs nothing); memory-mapped checkpoint
// tensors keep their mapping alive through the storage's owner. Row-major, contiguous.
#ifndef CHAI_KERNELS_TENSOR_H_
#define CHAI_KERNELS_TENSOR_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/types/span.h"
#include "kernels/dtype.h"

namespace chai {

enum class Device { kCpu, kCuda };
const char* DeviceName(Device device);

class Tensor {
 public:
  Tensor() = default;

  // Uninitialised tensor on the host or the current CUDA device.
  static Tensor Empty(std::vector<int64_t> shape, DType dtype, Device device = Device::kCpu);
  static Tensor Zeros(std::vector<int64_t> shape, DType dtype, Device device = Device::kCpu);
  // Host fp32 / i32 tensors copied from values (shape product must equal values.size()).
  static Tensor FromFloats(absl::Span<const float> values, std::vector<int64_t> shape);
  static Tensor FromInts(absl::Span<const int32_t> values, std::vector<int64_t> shape);
  // Wraps external memory; `owner` keeps it alive (e.g. a file mapping).
  static Tensor Wrap(void* data, std::vector<int64_t> shape, DType dtype, Device device,
                     std::shared_ptr<void> owner);

  // False for a default-constructed tensor (or a dropped one, e.g. a freed K head).
  bool defined() const { return data_ != nullptr; }
  const std::vector<int64_t>& shape() const { return shape_; }
  int rank() const { return static_cast<int>(shape_.size()); }
  int64_t dim(int i) const { return shape_[i < 0 ? shape_.size() + i : i]; }
  int64_t numel() const;
  size_t nbytes() const { return numel() * DTypeSize(dtype_); }
  DType dtype() const { return dtype_; }
  Device device() const { return device_; }
  std::string ShapeString() const;  // e.g. "[4, 64] fp32"

  void* raw() const { return data_; }
  template <typename T>
  T* data() const { return static_cast<T*>(data_); }

  // Rows [begin, end) of the first dimension, sharing storage.
  Tensor Rows(int64_t begin, int64_t end) const;
  // Same storage, new shape with the same element count.
  Tensor Reshape(std::vector<int64_t> shape) const;
  // Deep copies.
  Tensor Clone() const;
  Tensor To(Device device) const;
  // Host-only dtype conversion between float types (copy, or this when equal).
  Tensor Cast(DType dtype) const;

  // Host fp32 values (converts and copies from the device if needed).
  std::vector<float> ToFloats() const;

 private:
  std::shared_ptr<void> owner_;
  void* data_ = nullptr;
  std::vector<int64_t> shape_;
  DType dtype_ = DType::kF32;
  Device device_ = Device::kCpu;
};

// Copies bytes between tensors of the same size (any devices).
void CopyTensor(const Tensor& src, Tensor* dst);

}  // namespace chai

#endif  // CHAI_KERNELS_TENSOR_H_
