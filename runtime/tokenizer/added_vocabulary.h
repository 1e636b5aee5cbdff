// Added tokens ("added_tokens" in tokenizer.json): strings matched in the input before the model
// sees it, such as "</s>" or "<|begin_of_text|>".
//
// Matching follows Hugging Face: leftmost-longest matches, scanning on after each match (a match
// rejected by single_word still consumes its text); lstrip/rstrip swallow white space next to the
// token; tokens with normalized=false are matched in the raw text, the others in normalized text.
#ifndef CHAI_RUNTIME_TOKENIZER_ADDED_VOCABULARY_H_
#define CHAI_RUNTIME_TOKENIZER_ADDED_VOCABULARY_H_

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"

namespace chai {

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = false;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = false;
};

// A stretch of input: either an added token (id >= 0) or text for the normal pipeline.
struct Segment {
  int32_t id = -1;
  absl::string_view text;
  size_t offset = 0;  // byte offset of text in the string that was split
};

// Finds one set of patterns in text.
class TokenMatcher {
 public:
  // patterns[i] is matched for tokens[i] (the pattern differs from the content for normalized tokens).
  void Build(std::vector<std::string> patterns, std::vector<AddedToken> tokens);
  bool empty() const { return patterns_.empty(); }
  // Splits text into token and text segments (empty text segments are left out).
  void Split(absl::string_view text, std::vector<Segment>* out) const;

 private:
  // Longest pattern matching at pos, or -1.
  int LongestAt(absl::string_view text, size_t pos) const;

  std::vector<std::string> patterns_;
  std::vector<AddedToken> tokens_;
  // Pattern indices by first byte, longest first.
  std::array<std::vector<int>, 256> by_first_byte_;
};

class AddedVocabulary {
 public:
  // normalize maps a token's content to the pattern matched in normalized text (may be null).
  template <typename NormalizeFn>
  void Build(std::vector<AddedToken> tokens, NormalizeFn normalize);

  const TokenMatcher& raw_matcher() const { return raw_; }
  const TokenMatcher& normalized_matcher() const { return normalized_; }

  // The added token with this id, or nullptr.
  const AddedToken* Find(int32_t id) const;
  // The id of the added token with this content, or -1.
  int32_t IdOf(absl::string_view content) const;
  // Whether a token with this content is special.
  bool IsSpecialContent(absl::string_view content) const { return special_contents_.contains(content); }
  int32_t max_id() const { return max_id_; }

 private:
  std::vector<AddedToken> tokens_;
  absl::flat_hash_map<int32_t, size_t> by_id_;
  absl::flat_hash_map<std::string, int32_t> by_content_;
  absl::flat_hash_map<std::string, bool> special_contents_;
  TokenMatcher raw_, normalized_;
  int32_t max_id_ = -1;
};

template <typename NormalizeFn>
void AddedVocabulary::Build(std::vector<AddedToken> tokens, NormalizeFn normalize) {
  tokens_ = std::move(tokens);
  std::vector<std::string> raw_patterns, norm_patterns;
  std::vector<AddedToken> raw_tokens, norm_tokens;
  for (size_t i = 0; i < tokens_.size(); ++i) {
    const AddedToken& t = tokens_[i];
    by_id_[t.id] = i;
    by_content_[t.content] = t.id;
    if (t.special) special_contents_[t.content] = true;
    if (t.id > max_id_) max_id_ = t.id;
    if (t.content.empty()) continue;
    if (t.normalized) {
      norm_patterns.push_back(normalize(t.content));
      norm_tokens.push_back(t);
    } else {
      raw_patterns.push_back(t.content);
      raw_tokens.push_back(t);
    }
  }
  raw_.Build(std::move(raw_patterns), std::move(raw_tokens));
  normalized_.Build(std::move(norm_patterns), std::move(norm_tokens));
}

}  // namespace chai

#endif  // CHAI_RUNTIME_TOKENIZER_ADDED_VOCABULARY_H_
