// Log-probabilities of target tokens from a row of logits, in double.
//
// Why double: perplexity sums tens of thousands of log-probabilities and the tests compare it
// with Hugging Face at 1e-3 relative; a float log-sum-exp over 8k-50k logits loses ~1e-6 per
// token, and the sum needs better than that to be a fair reference for CHAI's differences.
#ifndef CHAI_RUNTIME_EVAL_LOG_LIKELIHOOD_H_
#define CHAI_RUNTIME_EVAL_LOG_LIKELIHOOD_H_

#include <cstdint>

namespace chai {

// log softmax(logits)[target] over `vocab` logits, computed as
// logits[target] - max - log(sum exp(logits - max)) in double.
double TokenLogProb(const float* logits, int64_t vocab, int32_t target);

// Sum of TokenLogProb over consecutive positions: row i of `logits` ([rows, vocab] row-major)
// predicts targets[i]. Returns the summed log-likelihood (negative).
double SumLogProbs(const float* logits, int64_t vocab, const int32_t* targets, int64_t rows);

}  // namespace chai

#endif  // CHAI_RUNTIME_EVAL_LOG_LIKELIHOOD_H_
