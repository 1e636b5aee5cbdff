// Causal attention over a sequence's cached K/V, with CHAI's shared scores: the probabilities
// are computed once per score head (representative) and applied to every head that uses them,
// each with its own V. Dense attention is the case score_head[h] == h.
#include <cmath>
#include <vector>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/parallel_for.h"

namespace chai::cpu {

void Attention(const Tensor& q, absl::Span<const Tensor> k_heads, absl::Span<const Tensor> v_heads,
               int64_t past_len, absl::Span<const int> score_head, Tensor* out) {
  const int num_heads = static_cast<int>(score_head.size());
  const int num_kv = static_cast<int>(v_heads.size());
  const int group = num_heads / num_kv;
  const int64_t tokens = q.dim(0);
  const int64_t d = q.dim(1) / num_heads;
  const int64_t total = past_len + tokens;
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));

  std::vector<int> reps;
  for (int h = 0; h < num_heads; ++h)
    if (score_head[h] == h) reps.push_back(h);

  // One task per (representative, query token): probabilities then P.V for all its members.
  ParallelFor(static_cast<int64_t>(reps.size()) * tokens, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> probs(total);
    for (int64_t task = begin; task < end; ++task) {
      const int r = reps[task / tokens];
      const int64_t t = task % tokens;
      const int64_t visible = past_len + t + 1;
      const float* qr = q.data<float>() + t * q.dim(1) + r * d;
      const float* kr = k_heads[r / group].data<float>();
      float mx = -INFINITY;
      for (int64_t j = 0; j < visible; ++j) {
        probs[j] = Dot(qr, kr + j * d, d) * scale;
        mx = std::max(mx, probs[j]);
      }
      double sum = 0;
      for (int64_t j = 0; j < visible; ++j) {
        probs[j] = std::exp(probs[j] - mx);
        sum += probs[j];
      }
      const float inv = static_cast<float>(1.0 / sum);
      for (int64_t j = 0; j < visible; ++j) probs[j] *= inv;
      for (int h = 0; h < num_heads; ++h) {
        if (score_head[h] != r) continue;
        const float* vh = v_heads[h / group].data<float>();
        float* o = out->data<float>() + t * q.dim(1) + h * d;
        for (int64_t c = 0; c < d; ++c) o[c] = 0.f;
        for (int64_t j = 0; j < visible; ++j) {
          const float p = probs[j];
          const float* vr = vh + j * d;
          for (int64_t c = 0; c < d; ++c) o[c] += p * vr[c];
        }
      }
    }
  });
}

}  // namespace chai::cpu
