// Checks on a paged KV pool after an op that appends to it (GPU tests of SplitQkvRotaryAppend and
// QkvLinearAppend): which slots were written, and how close.
#ifndef CHAI_TESTS_GPU_PAGED_POOL_CHECKS_H_
#define CHAI_TESTS_GPU_PAGED_POOL_CHECKS_H_

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/tensor.h"
#include "tests/gpu/gpu_test_util.h"

namespace chai::gpu_test {

// A pool after the op against the reference's: the same slots written (the poison, NaN, left
// everywhere else) and the written values within the dtype's tolerance.
inline void ExpectPoolClose(const Tensor& pool, const Tensor& ref, DType dtype) {
  const std::vector<float> out = pool.ToFloats(), want = ref.ToFloats();
  ASSERT_EQ(out.size(), want.size());
  std::vector<float> out_written, want_written;
  int64_t mismatched = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    if (std::isnan(want[i]) != std::isnan(out[i])) {
      ++mismatched;
    } else if (!std::isnan(want[i])) {
      out_written.push_back(out[i]);
      want_written.push_back(want[i]);
    }
  }
  EXPECT_EQ(mismatched, 0) << DTypeName(dtype) << ": elements written by only one of op and reference";
  EXPECT_FALSE(want_written.empty()) << "the reference wrote nothing";
  EXPECT_CLOSE(out_written, want_written, dtype, "pool");
}

// Byte-for-byte equality of two device tensors (NaN poison included).
inline bool SameBytes(const Tensor& a, const Tensor& b) {
  const Tensor ha = a.To(Device::kCpu), hb = b.To(Device::kCpu);
  return ha.nbytes() == hb.nbytes() && std::memcmp(ha.raw(), hb.raw(), ha.nbytes()) == 0;
}

}  // namespace chai::gpu_test

#endif  // CHAI_TESTS_GPU_PAGED_POOL_CHECKS_H_
