// Hand-written matchers for the pre-tokenizer regexes that byte-level BPE tokenizers use.
//
// We do not embed a regex engine: tokenizer.json files in the wild use a handful of patterns, and
// a direct matcher is both faster and free of a dependency. Each function below reproduces the
// leftmost-first alternation semantics of its pattern (Oniguruma, as Hugging Face tokenizers runs
// it) over UTF-8; invalid bytes count as one character of class "other".
//
//   kGpt2:   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//   kLlama3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
//            ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//   kQwen2:  kLlama3 with \p{N} in place of \p{N}{1,3}.
#ifndef CHAI_RUNTIME_TOKENIZER_REGEX_SPLIT_H_
#define CHAI_RUNTIME_TOKENIZER_REGEX_SPLIT_H_

#include <optional>
#include <vector>

#include "absl/strings/string_view.h"

namespace chai {

enum class SplitPattern { kGpt2, kLlama3, kQwen2 };

// The pattern whose regex source is `regex`, or nullopt when we have no matcher for it.
std::optional<SplitPattern> RecognizeSplitPattern(absl::string_view regex);

// Appends the consecutive matches of `pattern` in text to out (their concatenation is text).
void SplitByPattern(SplitPattern pattern, absl::string_view text, std::vector<absl::string_view>* out);

}  // namespace chai

#endif  // CHAI_RUNTIME_TOKENIZER_REGEX_SPLIT_H_
