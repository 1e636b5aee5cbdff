// Element-wise ops: activations, residual add, row softmax.
#include <cmath>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/parallel_for.h"

namespace chai::cpu {

void Relu(Tensor* x) {
  float* p = x->data<float>();
  for (int64_t i = 0, n = x->numel(); i < n; ++i) p[i] = p[i] > 0.f ? p[i] : 0.f;
}

void SiluMul(const Tensor& gate, const Tensor& up, Tensor* out) {
  const float* g = gate.data<float>();
  const float* u = up.data<float>();
  float* o = out->data<float>();
  ParallelFor(gate.numel(), 4096, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) o[i] = g[i] / (1.f + std::exp(-g[i])) * u[i];
  });
}

void Add(const Tensor& a, const Tensor& b, Tensor* out) {
  const float* pa = a.data<float>();
  const float* pb = b.data<float>();
  float* o = out->data<float>();
  for (int64_t i = 0, n = a.numel(); i < n; ++i) o[i] = pa[i] + pb[i];
}

static void SoftmaxInPlace(float* row, int64_t n) {
  float mx = -INFINITY;
  for (int64_t i = 0; i < n; ++i) mx = std::max(mx, row[i]);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    row[i] = std::exp(row[i] - mx);
    sum += row[i];
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (int64_t i = 0; i < n; ++i) row[i] *= inv;
}

void SoftmaxRows(Tensor* x) {
  const int64_t cols = x->dim(-1), rows = x->numel() / cols;
  for (int64_t r = 0; r < rows; ++r) SoftmaxInPlace(x->data<float>() + r * cols, cols);
}

}  // namespace chai::cpu
