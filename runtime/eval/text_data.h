// Evaluation text: reading a data file and cutting its tokens into perplexity windows.
//
// Windows follow Hugging Face's sliding-window perplexity recipe
// (https://huggingface.co/docs/transformers/perplexity): window w covers tokens
// [w * stride, min(w * stride + window, n)), windows stop once one reaches the end of the text,
// and each window scores only the tokens the previous window did not score. A token is scored
// as the prediction of the logits one position before it inside the same window, so the first
// token of the text is never scored, and with stride == window (non-overlapping windows) the
// first token of every window is not scored either (it has no context in its window).
#ifndef CHAI_RUNTIME_EVAL_TEXT_DATA_H_
#define CHAI_RUNTIME_EVAL_TEXT_DATA_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "runtime/tokenizer/tokenizer.h"

namespace chai {

// The whole file as text. Errors (one line, naming `flag` and the path): missing, unreadable,
// empty or whitespace-only file.
absl::StatusOr<std::string> ReadTextFile(const std::string& path, const std::string& flag);

// The tokenizer of a checkpoint directory; a one-line error when `model` is not a directory or
// holds no tokenizer files (eval and calibrate read text, so they need one).
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadModelTokenizer(const std::string& model);

// The whole text as one token stream, with the tokenizer's special tokens (OPT's and LLaMA's
// BOS once at the start), as Hugging Face's perplexity recipe encodes a corpus.
std::vector<int32_t> TokenizeText(const Tokenizer& tokenizer, const std::string& text);

struct TextWindow {
  int64_t begin = 0;        // first token of the window (inclusive)
  int64_t end = 0;          // one past the last token
  int64_t score_begin = 0;  // first token whose log-likelihood this window adds, > begin

  int64_t length() const { return end - begin; }
  int64_t scored() const { return end - score_begin; }
};

// Plans the windows over `num_tokens` tokens. max_windows > 0 keeps only the first ones (the
// rest of the text is then not scored). Errors: window < 2, stride < 1 or > window, fewer than
// 2 tokens.
absl::StatusOr<std::vector<TextWindow>> PlanWindows(int64_t num_tokens, int window, int stride, int max_windows = 0);

// The calibration / held-out split that `chai calibrate` and `chai eval --split` share: the text
// is cut into whole non-overlapping windows 0, 1, 2, ... of `window` tokens; even windows form the
// calibration pool and odd windows the held-out pool. Both pools cover the whole text, so held-out
// text is disjoint from calibration text yet drawn from the same mix of documents.
enum class WindowSplit { kAll, kCalibration, kHeldOut };

// "all" | "calibration" | "heldout".
absl::StatusOr<WindowSplit> ParseWindowSplit(const std::string& name);

// First tokens of the pool's windows (every whole window for kAll), in order.
std::vector<int64_t> SplitPool(int64_t num_tokens, int window, WindowSplit split);

// `count` (<= pool size) members spread evenly: pool[floor(j * size / count)], j = 0..count-1.
std::vector<int64_t> SpreadEvenly(const std::vector<int64_t>& pool, int count);

// Windows of `window` tokens at `starts`, each scoring every token but its first.
std::vector<TextWindow> WindowsAt(const std::vector<int64_t>& starts, int window);

}  // namespace chai

#endif  // CHAI_RUNTIME_EVAL_TEXT_DATA_H_
