#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/argmax.h"

namespace chai {

absl::Status SamplingParams::Validate() const {
  if (greedy) return absl::OkStatus();
  if (!(temperature > 0.f) || !std::isfinite(temperature)) {
    return absl::InvalidArgumentError(absl::StrCat("--temperature must be > 0 (got ", temperature, ")"));
  }
  if (top_k < 0) return absl::InvalidArgumentError(absl::StrCat("--top-k must be >= 0 (got ", top_k, ")"));
  if (!(top_p > 0.f && top_p <= 1.f)) {
    return absl::InvalidArgumentError(absl::StrCat("--top-p must be in (0, 1] (got ", top_p, ")"));
  }
  return absl::OkStatus();
}

int32_t Argmax(absl::Span<const float> logits) {
  return ArgmaxFloats(logits.data(), static_cast<int64_t>(logits.size()));
}

int32_t Sampler::Sample(absl::Span<const float> logits) {
  if (params_.greedy) return Argmax(logits);
  const int64_t n = static_cast<int64_t>(logits.size());
  // Candidates by descending logit; top-k keeps a prefix.
  std::vector<int32_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  const int64_t keep_k = params_.top_k > 0 ? std::min<int64_t>(params_.top_k, n) : n;
  auto by_logit = [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
  std::partial_sort(order.begin(), order.begin() + keep_k, order.end(), by_logit);
  order.resize(keep_k);
  std::vector<double> probs(keep_k);
  const double mx = logits[order[0]] / params_.temperature;
  double sum = 0;
  for (int64_t i = 0; i < keep_k; ++i) {
    probs[i] = std::exp(logits[order[i]] / params_.temperature - mx);
    sum += probs[i];
  }
  // top-p: the smallest prefix whose mass reaches p (at least one token).
  int64_t keep = keep_k;
  if (params_.top_p < 1.f) {
    double cum = 0;
    for (int64_t i = 0; i < keep_k; ++i) {
      cum += probs[i] / sum;
      if (cum >= params_.top_p) {
        keep = i + 1;
        break;
      }
    }
  }
  double mass = 0;
  for (int64_t i = 0; i < keep; ++i) mass += probs[i];
  const double u = std::uniform_real_distribution<double>(0.0, mass)(rng_);
  double acc = 0;
  for (int64_t i = 0; i < keep; ++i) {
    acc += probs[i];
    if (u < acc) return order[i];
  }
  return order[keep - 1];
}

}  // namespace chai
