// Normalizers of tokenizer.json ("normalizer" key): text rewrites applied to every piece of input
// between added tokens, before pre-tokenization.
//
// Supported: Prepend, Replace (string patterns), Strip, Sequence of these. LLaMA-1/2 files use
// Sequence[Prepend("▁"), Replace(" ", "▁")].
#ifndef CHAI_RUNTIME_TOKENIZER_NORMALIZER_H_
#define CHAI_RUNTIME_TOKENIZER_NORMALIZER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "runtime/json.h"

namespace chai {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual void Normalize(std::string* text) const = 0;
};

// Builds the normalizer a tokenizer.json "normalizer" value describes; nullptr for JSON null.
// Errors say what is unsupported or malformed (without the file name: the caller adds it).
absl::StatusOr<std::unique_ptr<Normalizer>> ParseNormalizer(const Json& json);

// Replaces every occurrence of `from` (not empty) in text with `to`.
void ReplaceAll(std::string* text, absl::string_view from, absl::string_view to);

}  // namespace chai

#endif  // CHAI_RUNTIME_TOKENIZER_NORMALIZER_H_
