// out = x * W^T + b. Weights are [out_features, in_features] as checkpoints store them, so each
// output is a dot product of two contiguous rows. Work is split over output features (every
// thread streams its own slice of W once) and tiled over 4 tokens to reuse each loaded W row.
#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/parallel_for.h"

namespace chai::cpu {

float Dot(const float* a, const float* b, int64_t n) {
  float acc = 0.f;
#pragma omp simd reduction(+ : acc)
  for (int64_t i = 0; i < n; ++i) acc += a[i] * b[i];
  return acc;
}

void Linear(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor* out) {
  const int64_t tokens = x.dim(0), in = x.dim(1), outs = weight.dim(0);
  const float* xs = x.data<float>();
  const float* w = weight.data<float>();
  const float* b = bias.defined() ? bias.data<float>() : nullptr;
  float* o = out->data<float>();
  ParallelFor(outs, 16, [&](int64_t begin, int64_t end) {
    constexpr int64_t kTile = 4;
    for (int64_t t0 = 0; t0 < tokens; t0 += kTile) {
      const int64_t t1 = std::min(tokens, t0 + kTile);
      for (int64_t n = begin; n < end; ++n) {
        const float* wr = w + n * in;
        const float bn = b ? b[n] : 0.f;
        for (int64_t t = t0; t < t1; ++t) o[t * outs + n] = Dot(xs + t * in, wr, in) + bn;
      }
    }
  });
}

}  // namespace chai::cpu
