// Helpers for GPU tests: skip with a printed reason when no GPU is visible, random operands
// that exist both as a CUDA tensor of the run dtype and as the fp32 host tensor holding exactly
// the same (rounded) values for the CPU reference, NaN-poisoned outputs, and relative errors.
#ifndef CHAI_TESTS_GPU_GPU_TEST_UTIL_H_
#define CHAI_TESTS_GPU_GPU_TEST_UTIL_H_

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/device_memory.h"
#include "kernels/tensor.h"

namespace chai::gpu_test {

// Every GPU test derives from this: without a visible device the test is skipped, loudly.
class GpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!CudaAvailable()) {
      GTEST_SKIP() << "no CUDA device is visible (or this build has no CUDA backend)";
    }
  }
};

inline std::mt19937& Rng() {
  static std::mt19937 rng(20240611);
  return rng;
}

// A float operand: `dev` on the GPU in the run dtype, `ref` on the host in fp32 with the same
// values (the dtype's rounding of a fresh normal draw mean + scale * N(0, 1)).
struct Operand {
  Tensor dev;
  Tensor ref;
};

inline Operand Random(std::vector<int64_t> shape, DType dtype, float scale = 1.f, float mean = 0.f) {
  Tensor host = Tensor::Empty(shape, DType::kF32);
  std::normal_distribution<float> dist(mean, scale);
  for (int64_t i = 0; i < host.numel(); ++i) host.data<float>()[i] = dist(Rng());
  Tensor rounded = host.Cast(dtype);
  return Operand{rounded.To(Device::kCuda), rounded.Cast(DType::kF32).Clone()};
}

// Like Random() but uniform with the same variance and fast enough for 350M-element weights
// (normal draws through std::normal_distribution take seconds per matrix). Seeded from Rng(), so
// every call draws fresh values.
inline Operand FastRandom(std::vector<int64_t> shape, DType dtype, float scale) {
  Tensor host = Tensor::Empty(shape, DType::kF32);
  uint64_t state = gpu_test::Rng()() * 0x9E3779B97F4A7C15ull + 1;
  float* v = host.data<float>();
  const float half_width = scale * 1.7320508f;  // uniform on [-a, a] has variance a^2 / 3
  for (int64_t i = 0; i < host.numel(); ++i) {
    state ^= state << 13, state ^= state >> 7, state ^= state << 17;  // xorshift64
    v[i] = (static_cast<float>(state >> 40) * (2.f / 16777216.f) - 1.f) * half_width;
  }
  Tensor rounded = host.Cast(dtype);
  return Operand{rounded.To(Device::kCuda), rounded.Cast(DType::kF32)};
}

// A host int32 tensor and its device copy.
inline std::pair<Tensor, Tensor> Ints(const std::vector<int32_t>& values) {
  Tensor host = Tensor::FromInts(values, {static_cast<int64_t>(values.size())});
  return {host, host.To(Device::kCuda)};
}

// Every byte 0xFF: a NaN in fp32, fp16 and bf16 alike, so unwritten elements fail the check.
inline Tensor Poisoned(std::vector<int64_t> shape, DType dtype, Device device = Device::kCuda) {
  Tensor host = Tensor::Empty(shape, dtype);
  std::memset(host.raw(), 0xFF, host.nbytes());
  return device == Device::kCpu ? host : host.To(device);
}

// ||out - ref|| / ||ref|| over all elements; infinity if any output is not finite.
inline double RelErr(const std::vector<float>& out, const std::vector<float>& ref) {
  if (out.size() != ref.size()) return INFINITY;
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (!std::isfinite(out[i])) return INFINITY;
    const double d = static_cast<double>(out[i]) - ref[i];
    num += d * d;
    den += static_cast<double>(ref[i]) * ref[i];
  }
  if (den == 0) return std::sqrt(num);
  return std::sqrt(num / den);
}
inline double RelErr(const Tensor& out, const Tensor& ref) { return RelErr(out.ToFloats(), ref.ToFloats()); }

// fp32 < 1e-5, fp16/bf16 < 1e-2 (DESIGN.md, "Numerics and tolerances").
inline double Tolerance(DType dtype) { return dtype == DType::kF32 ? 1e-5 : 1e-2; }

inline const std::vector<DType>& FloatTypes() {
  static const std::vector<DType> types = {DType::kF32, DType::kF16, DType::kBF16};
  return types;
}

}  // namespace chai::gpu_test

// The op's output against the reference, within the dtype's tolerance (a macro so that the
// failure points at the caller's line).
#define EXPECT_CLOSE(out, ref, dtype, what)                                                 \
  do {                                                                                      \
    const double err_ = ::chai::gpu_test::RelErr(out, ref);                                 \
    EXPECT_LT(err_, ::chai::gpu_test::Tolerance(dtype)) << DTypeName(dtype) << " " << what; \
  } while (0)

#endif  // CHAI_TESTS_GPU_GPU_TEST_UTIL_H_
