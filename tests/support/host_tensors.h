// Host fp32 tensors for the CPU op tests: fresh normal random inputs (from the test's own
// generator, so that each test file keeps its sequence) and NaN-poisoned outputs, so that an
// element an op forgets to write cannot pass.
#ifndef CHAI_TESTS_SUPPORT_HOST_TENSORS_H_
#define CHAI_TESTS_SUPPORT_HOST_TENSORS_H_

#include <cstdint>
#include <random>
#include <vector>

#include "kernels/tensor.h"

namespace chai::testing {

Tensor RandomNormal(std::vector<int64_t> shape, std::mt19937& rng, float scale = 1.f, float mean = 0.f);
Tensor NanPoisoned(std::vector<int64_t> shape);

}  // namespace chai::testing

#endif  // CHAI_TESTS_SUPPORT_HOST_TENSORS_H_
