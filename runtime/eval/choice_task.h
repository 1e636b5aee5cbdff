// Zero-shot multiple-choice tasks in the lm-evaluation-harness style: a JSONL file, one item a
// line, {"context": "...", "choices": ["...", ...], "label": i}. Each choice is scored by the
// summed log-likelihood of its tokens as a continuation of the context.
#ifndef CHAI_RUNTIME_EVAL_CHOICE_TASK_H_
#define CHAI_RUNTIME_EVAL_CHOICE_TASK_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/tokenizer/tokenizer.h"

namespace chai {

struct ChoiceItem {
  std::string context;
  std::vector<std::string> choices;
  int label = 0;
  int line = 0;  // 1-based line in the file, for error messages
};

// Errors are one line naming the file and line: missing or empty file, a line that is not a
// JSON object, a missing or mistyped field, fewer than 2 choices, an empty choice, a label out
// of range. Blank lines are skipped.
absl::StatusOr<std::vector<ChoiceItem>> LoadChoiceTask(const std::string& path);

// The tokens of one (context, choice) pair.
struct ChoiceRequest {
  std::vector<int32_t> context;       // never empty
  std::vector<int32_t> continuation;  // never empty
};

// lm-evaluation-harness's pair split: trailing whitespace of the context moves to the front
// of the continuation, then continuation = Encode(context + choice)[len(Encode(context)):], so
// the choice's first word is tokenized as it appears after the context (" Paris", not
// "Paris"). Unlike the harness's default for causal models, special tokens are added (OPT's
// and LLaMA's BOS start the context), as in training and in `chai generate --prompt`.
ChoiceRequest EncodeChoice(const Tokenizer& tokenizer, const std::string& context, const std::string& choice);

// Every item's requests, in order. Errors name the line: a context that encodes to no tokens,
// or a choice that adds none.
absl::StatusOr<std::vector<std::vector<ChoiceRequest>>> EncodeChoiceTask(const Tokenizer& tokenizer,
                                                                         const std::vector<ChoiceItem>& items,
                                                                         const std::string& path);

// Length used by acc_norm: Unicode code points of the choice as written (Python's len()).
int64_t CodePoints(const std::string& utf8);

}  // namespace chai

#endif  // CHAI_RUNTIME_EVAL_CHOICE_TASK_H_
