// Rotary position embedding, Hugging Face rotate_half layout (LLaMA): the first and second
// halves of each head form the (x, y) pairs. Angles in double: positions reach 10^5 and more.
#include <cmath>

#include "kernels/cpu/cpu_ops.h"

namespace chai::cpu {

void Rotary(Tensor* x, const Tensor& position_tensor, int num_heads, int head_dim, float theta) {
  absl::Span<const int32_t> positions(position_tensor.data<int32_t>(), position_tensor.numel());
  const int half = head_dim / 2;
  const int64_t stride = static_cast<int64_t>(num_heads) * head_dim;
  std::vector<float> cosv(half), sinv(half);
  for (size_t t = 0; t < positions.size(); ++t) {
    for (int i = 0; i < half; ++i) {
      // HF computes inv_freq in fp32 and the angle as a fp32 product; do the same so the
      // reference agrees at large positions.
      const float inv_freq = 1.0f / static_cast<float>(std::pow(static_cast<double>(theta), (2.0 * i) / head_dim));
      const float angle = static_cast<float>(positions[t]) * inv_freq;
      cosv[i] = std::cos(angle);
      sinv[i] = std::sin(angle);
    }
    float* row = x->data<float>() + t * stride;
    for (int h = 0; h < num_heads; ++h) {
      float* v = row + h * head_dim;
      for (int i = 0; i < half; ++i) {
        const float a = v[i], b = v[i + half];
        v[i] = a * cosv[i] - b * sinv[i];
        v[i + half] = b * cosv[i] + a * sinv[i];
      }
    }
  }
}

}  // namespace chai::cpu
