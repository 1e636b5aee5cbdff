// CUDA ArgmaxRows against the CPU op on the same rows (fp32, fp16, bf16): random rows with many
// ties, -inf and NaN entries, rows of NaN only, padding columns beyond the vocabulary that would
// win if read, and vocabulary sizes around the CTA's stride.
#include <random>
#include <tuple>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/device_memory.h"
#include "kernels/ops.h"
#include "kernels/tensor.h"

namespace chai {
namespace {

TEST(ArgmaxGpu, MatchesCpu) {
  if (!CudaAvailable()) GTEST_SKIP() << "no CUDA device visible";
  std::mt19937 rng(3);
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16}) {
    for (auto [rows, cols, width] : {std::tuple<int, int, int>{1, 1, 1}, {4, 255, 256}, {7, 257, 300},
                                     {64, 32000, 32000}, {3, 50272, 50304}, {2, 152064, 152064}}) {
      std::vector<float> values(size_t(rows) * width);
      for (float& v : values) {
        const int r = static_cast<int>(rng() % 64);
        v = r == 0 ? -INFINITY : (r == 1 ? NAN : static_cast<float>(rng() % 32) - 16.f);
      }
      for (int r = 0; r < rows; ++r) values[size_t(r) * width + width - 1] = 1000.f;  // padding (or the winner)
      if (rows > 1) std::fill(values.begin() + width, values.begin() + 2 * width, NAN);
      Tensor x = Tensor::Empty({rows, width}, dtype);
      ConvertFloats(values.data(), DType::kF32, x.raw(), dtype, values.size());
      Tensor ref = Tensor::Empty({rows}, DType::kI32);
      ops::ArgmaxRows(x, cols, &ref);
      Tensor got = Tensor::Empty({rows}, DType::kI32, Device::kCuda);
      ops::ArgmaxRows(x.To(Device::kCuda), cols, &got);
      const Tensor host = got.To(Device::kCpu);
      for (int r = 0; r < rows; ++r) {
        EXPECT_EQ(host.data<int32_t>()[r], ref.data<int32_t>()[r])
            << DTypeName(dtype) << " rows " << rows << " cols " << cols << " row " << r;
      }
    }
  }
}

}  // namespace
}  // namespace chai
