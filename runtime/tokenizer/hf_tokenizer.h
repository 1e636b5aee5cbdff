// The Hugging Face tokenizer pipeline: added tokens -> normalizer -> pre-tokenizer -> BPE model ->
// post-processor, and for decoding: ids -> token strings -> decoder.
//
// The loaders (tokenizer.json, vocab.json + merges.txt) build the parts; this class only runs them.
#ifndef CHAI_RUNTIME_TOKENIZER_HF_TOKENIZER_H_
#define CHAI_RUNTIME_TOKENIZER_HF_TOKENIZER_H_

#include <memory>
#include <string>
#include <vector>

#include "runtime/tokenizer/added_vocabulary.h"
#include "runtime/tokenizer/bpe_model.h"
#include "runtime/tokenizer/decoder.h"
#include "runtime/tokenizer/normalizer.h"
#include "runtime/tokenizer/post_processor.h"
#include "runtime/tokenizer/pre_tokenizer.h"
#include "runtime/tokenizer/tokenizer.h"

namespace chai {

struct HfTokenizerParts {
  std::unique_ptr<Normalizer> normalizer;        // may be null
  std::unique_ptr<PreTokenizer> pre_tokenizer;   // may be null
  std::unique_ptr<BpeModel> model;               // required
  std::vector<AddedToken> added_tokens;
  std::unique_ptr<PostProcessor> post_processor;  // may be null
  std::unique_ptr<Decoder> decoder;               // null: tokens are joined with spaces
};

class HfTokenizer : public Tokenizer {
 public:
  explicit HfTokenizer(HfTokenizerParts parts);

  std::vector<int32_t> Encode(absl::string_view text, bool add_special_tokens = true) const override;
  std::string Decode(absl::Span<const int32_t> ids, bool skip_special_tokens = true) const override;
  int32_t vocab_size() const override;
  int32_t TokenToId(absl::string_view token) const override;
  std::string IdToToken(int32_t id) const override;
  bool IsSpecial(int32_t id) const override;

 private:
  // Encodes text that holds no raw-matched added token.
  void EncodeSegment(absl::string_view text, bool at_start, std::vector<int32_t>* ids) const;

  HfTokenizerParts parts_;
  AddedVocabulary added_;
};

}  // namespace chai

#endif  // CHAI_RUNTIME_TOKENIZER_HF_TOKENIZER_H_
