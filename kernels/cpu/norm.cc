// LayerNorm (OPT) and RMSNorm (LLaMA), one row per token; statistics in double for accuracy.
#include <cmath>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/parallel_for.h"

namespace chai::cpu {

void LayerNorm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps, Tensor* out) {
  const int64_t rows = x.dim(0), cols = x.dim(1);
  const float* w = weight.data<float>();
  const float* b = bias.defined() ? bias.data<float>() : nullptr;
  ParallelFor(rows, 4, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* in = x.data<float>() + r * cols;
      float* o = out->data<float>() + r * cols;
      double mean = 0;
      for (int64_t c = 0; c < cols; ++c) mean += in[c];
      mean /= cols;
      double var = 0;
      for (int64_t c = 0; c < cols; ++c) var += (in[c] - mean) * (in[c] - mean);
      var /= cols;
      const float inv = static_cast<float>(1.0 / std::sqrt(var + eps));
      const float m = static_cast<float>(mean);
      for (int64_t c = 0; c < cols; ++c) o[c] = (in[c] - m) * inv * w[c] + (b ? b[c] : 0.f);
    }
  });
}

void RmsNorm(const Tensor& x, const Tensor& weight, float eps, Tensor* out) {
  const int64_t rows = x.dim(0), cols = x.dim(1);
  const float* w = weight.data<float>();
  ParallelFor(rows, 4, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* in = x.data<float>() + r * cols;
      float* o = out->data<float>() + r * cols;
      double ss = 0;
      for (int64_t c = 0; c < cols; ++c) ss += static_cast<double>(in[c]) * in[c];
      const float inv = static_cast<float>(1.0 / std::sqrt(ss / cols + eps));
      for (int64_t c = 0; c < cols; ++c) o[c] = in[c] * inv * w[c];
    }
  });
}

}  // namespace chai::cpu
