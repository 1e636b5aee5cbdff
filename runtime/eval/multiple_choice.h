// Scoring multiple-choice items: every choice of an item is a sequence of one forward pass
// (context + continuation minus its last token, logits at every position), and its score is
// the summed log-likelihood of the continuation tokens. acc picks the highest score; acc_norm
// divides each score by the choice's length in characters first (lm-evaluation-harness).
// Ties go to the lowest choice index (numpy argmax).
#ifndef CHAI_RUNTIME_EVAL_MULTIPLE_CHOICE_H_
#define CHAI_RUNTIME_EVAL_MULTIPLE_CHOICE_H_

#include <functional>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/chai/chai_policy.h"
#include "runtime/engine.h"
#include "runtime/eval/choice_task.h"

namespace chai {

struct MultipleChoiceOptions {
  const ChaiPolicy* chai = nullptr;        // CHAI on every sequence; the engine must use it
  std::function<void(int, int)> progress;  // (items done, items in all)
};

struct MultipleChoiceResult {
  std::vector<std::vector<double>> loglik;  // [item][choice], summed log-likelihood
  std::vector<int> pred;                    // argmax of loglik per item
  std::vector<int> pred_norm;               // argmax of loglik / characters per item
  int correct = 0;
  int correct_norm = 0;
  double seconds = 0;

  int items() const { return static_cast<int>(pred.size()); }
  double acc() const { return items() > 0 ? double(correct) / items() : 0.0; }
  double acc_norm() const { return items() > 0 ? double(correct_norm) / items() : 0.0; }
};

// Inputs longer than the model's positions lose tokens from the left of the context (as the
// harness truncates); a continuation that alone does not fit is an error naming its line.
absl::StatusOr<MultipleChoiceResult> EvaluateMultipleChoice(Engine& engine, const std::vector<ChoiceItem>& items,
                                                            const std::vector<std::vector<ChoiceRequest>>& requests,
                                                            const MultipleChoiceOptions& options);

// Longest input (context + continuation - 1 tokens, capped at max_positions) and the most
// choices of any item: what the KV cache must hold at once.
void ChoiceTaskExtent(const std::vector<std::vector<ChoiceRequest>>& requests, int max_positions, int64_t* max_len,
                      int64_t* max_choices);

}  // namespace chai

#endif  // CHAI_RUNTIME_EVAL_MULTIPLE_CHOICE_H_
