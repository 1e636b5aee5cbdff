// Next-token choice from logits: greedy, or temperature / top-k / top-p sampling with a seed.
#ifndef CHAI_RUNTIME_SAMPLER_H_
#define CHAI_RUNTIME_SAMPLER_H_

#include <cstdint>
#include <random>

#include "absl/status/status.h"
#include "absl/types/span.h"

namespace chai {

struct SamplingParams {
  bool greedy = true;
  float temperature = 1.0f;  // > 0
  int top_k = 0;             // 0: no limit
  float top_p = 1.0f;        // (0, 1]
  uint64_t seed = 0;

  absl::Status Validate() const;
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) {}
  // Greedy picks the lowest index among equal maxima (as torch.argmax does).
  int32_t Sample(absl::Span<const float> logits);
  bool greedy() const { return params_.greedy; }

 private:
  SamplingParams params_;
  std::mt19937_64 rng_;
};

int32_t Argmax(absl::Span<const float> logits);

}  // namespace chai

#endif  // CHAI_RUNTIME_SAMPLER_H_
