// Perplexity of a token stream: each window is prefilled in one forward pass with logits at
// every position, and the tokens it scores (see text_data.h) add their negative
// log-likelihood. CHAI, when given, is enabled on every window exactly as `chai generate`
// enables it on a prompt: the window's first 5 tokens fix the clusters for the whole window.
#ifndef CHAI_RUNTIME_EVAL_PERPLEXITY_H_
#define CHAI_RUNTIME_EVAL_PERPLEXITY_H_

#include <cmath>
#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "runtime/chai/chai_policy.h"
#include "runtime/engine.h"
#include "runtime/eval/text_data.h"

namespace chai {

struct PerplexityOptions {
  int batch = 1;                     // windows per forward pass (the KV cache must hold them)
  const ChaiPolicy* chai = nullptr;  // CHAI on every window; the engine must use this policy
  // Called after each batch with (windows done, windows in all); for progress lines.
  std::function<void(int, int)> progress;
};

struct PerplexityResult {
  double nll = 0;                  // summed negative log-likelihood, nats
  int64_t tokens = 0;              // scored tokens
  std::vector<double> window_nll;  // per window, in order
  double seconds = 0;

  int windows() const { return static_cast<int>(window_nll.size()); }
  double mean_nll() const { return tokens > 0 ? nll / static_cast<double>(tokens) : 0.0; }
  double perplexity() const { return std::exp(mean_nll()); }
};

// Errors: those of Engine::Forward (ids out of range, a window longer than the model's
// positions, KV cache too small for `batch` windows), batch < 1, windows outside `ids`.
absl::StatusOr<PerplexityResult> EvaluatePerplexity(Engine& engine, absl::Span<const int32_t> ids,
                                                    absl::Span<const TextWindow> windows,
                                                    const PerplexityOptions& options);

}  // namespace chai

#endif  // CHAI_RUNTIME_EVAL_PERPLEXITY_H_
