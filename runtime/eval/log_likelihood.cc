#include "runtime/eval/log_likelihood.h"

#include <algorithm>
#include <cmath>

namespace chai {

double TokenLogProb(const float* logits, int64_t vocab, int32_t target) {
  double max = -INFINITY;
  for (int64_t i = 0; i < vocab; ++i) max = std::max(max, static_cast<double>(logits[i]));
  double sum = 0;
  for (int64_t i = 0; i < vocab; ++i) sum += std::exp(static_cast<double>(logits[i]) - max);
  return static_cast<double>(logits[target]) - max - std::log(sum);
}

double SumLogProbs(const float* logits, int64_t vocab, const int32_t* targets, int64_t rows) {
  double total = 0;
  for (int64_t r = 0; r < rows; ++r) total += TokenLogProb(logits + r * vocab, vocab, targets[r]);
  return total;
}

}  // namespace chai
