#include "tests/support/host_tensors.h"

#include <limits>
#include <utility>

namespace chai::testing {

Tensor RandomNormal(std::vector<int64_t> shape, std::mt19937& rng, float scale, float mean) {
  Tensor t = Tensor::Empty(std::move(shape), DType::kF32);
  std::normal_distribution<float> dist(mean, scale);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = dist(rng);
  return t;
}

Tensor NanPoisoned(std::vector<int64_t> shape) {
  Tensor t = Tensor::Empty(std::move(shape), DType::kF32);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = std::numeric_limits<float>::quiet_NaN();
  return t;
}

}  // namespace chai::testing
