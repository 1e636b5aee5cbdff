// The transformers-side files next to vocab.json/merges.txt or tokenizer.model that say which
// special tokens exist and whether Encode adds them: tokenizer_config.json,
// special_tokens_map.json, added_tokens.json (and config.json's model_type).
#ifndef CHAI_RUNTIME_TOKENIZER_TOKENIZER_CONFIG_H_
#define CHAI_RUNTIME_TOKENIZER_TOKENIZER_CONFIG_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/tokenizer/added_vocabulary.h"

namespace chai {

struct TokenizerConfig {
  std::optional<bool> add_bos_token;
  std::optional<bool> add_eos_token;
  std::optional<bool> add_prefix_space;
  std::string bos_token;  // content; empty when not named
  std::string eos_token;
  // Special and added tokens the files name, in the order first named; id is -1 when no file
  // gives one (the vocabulary then must).
  std::vector<AddedToken> tokens;
  std::string model_type;  // from config.json, "" when unknown
};

// Reads whichever of the files dir holds; absent files are fine, malformed ones are errors that
// name the file.
absl::StatusOr<TokenizerConfig> ReadTokenizerConfig(const std::string& dir);

}  // namespace chai

#endif  // CHAI_RUNTIME_TOKENIZER_TOKENIZER_CONFIG_H_
