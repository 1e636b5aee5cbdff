#include "runtime/chai/features.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace chai {

std::vector<float> AttentionFeatures(const float* q, const float* k, int num_heads,
                                     int num_kv_heads, int head_dim, int q_stride, int k_stride) {
  if (num_heads <= 0 || num_kv_heads <= 0 || head_dim <= 0 || num_heads % num_kv_heads != 0 ||
      q_stride < num_heads * head_dim || k_stride < num_kv_heads * head_dim) {
    std::fprintf(stderr,
                 "AttentionFeatures: bad shape heads=%d kv_heads=%d head_dim=%d q_stride=%d "
                 "k_stride=%d\n",
                 num_heads, num_kv_heads, head_dim, q_stride, k_stride);
    std::abort();
  }
  constexpr int T = kChaiFeatureTokens;
  const int group = num_heads / num_kv_heads;
  const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim));
  std::vector<float> out(static_cast<size_t>(num_heads) * kChaiFeatureSize);
  for (int h = 0; h < num_heads; ++h) {
    const int g = h / group;
    for (int i = 0; i < T; ++i) {
      const float* qi = q + static_cast<size_t>(i) * q_stride + static_cast<size_t>(h) * head_dim;
      double s[T];
      double m = -INFINITY;
      for (int j = 0; j < T; ++j) {
        const float* kj = k + static_cast<size_t>(j) * k_stride + static_cast<size_t>(g) * head_dim;
        double dot = 0.0;
        for (int d = 0; d < head_dim; ++d) dot += static_cast<double>(qi[d]) * kj[d];
        s[j] = dot * scale;
        m = std::fmax(m, s[j]);
      }
      double sum = 0.0;
      for (int j = 0; j < T; ++j) {
        s[j] = std::exp(s[j] - m);
        sum += s[j];
      }
      float* row = out.data() + static_cast<size_t>(h) * kChaiFeatureSize + i * T;
      for (int j = 0; j < T; ++j) row[j] = static_cast<float>(s[j] / sum);
    }
  }
  return out;
}

}  // namespace chai
