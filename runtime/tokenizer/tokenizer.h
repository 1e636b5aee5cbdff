// Text <-> token ids, compatible with Hugging Face tokenizers.
//
// Formats (FromDirectory picks by what the checkpoint directory holds, in this order):
//   tokenizer.json            Hugging Face `tokenizers` file with a BPE model: byte-level (GPT-2, OPT,
//                             LLaMA-3) or SentencePiece-style (LLaMA-1/2: Metaspace, byte fallback).
//   vocab.json + merges.txt   original GPT-2/OPT checkpoints (byte-level BPE); tokenizer_config.json and
//                             special_tokens_map.json, when present, give the special tokens.
//   tokenizer.model           SentencePiece model (original LLaMA), through libsentencepiece when the
//                             build has it.
// Every load error is one line that names the file and the problem.
//
// Encode and Decode are const and safe to call from several threads at once.
#ifndef CHAI_RUNTIME_TOKENIZER_TOKENIZER_H_
#define CHAI_RUNTIME_TOKENIZER_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace chai {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Picks the format from what dir holds (tokenizer.json, vocab.json+merges.txt, tokenizer.model).
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromDirectory(const std::string& dir);
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromTokenizerJson(const std::string& path);
  // GPT-2/OPT byte-level BPE files. config_dir, when not empty, is searched for tokenizer_config.json,
  // special_tokens_map.json and added_tokens.json.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromVocabAndMerges(const std::string& vocab_json,
                                                                       const std::string& merges_txt,
                                                                       const std::string& config_dir = "");
  // A SentencePiece tokenizer.model; config_dir as above (add_bos_token / add_eos_token).
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromSentencePieceModel(
      const std::string& path, const std::string& config_dir = "");
  // Whether this build can read tokenizer.model files (linked with libsentencepiece).
  static bool SentencePieceAvailable();

  // add_special_tokens applies the post-processor (e.g. OPT's leading </s>, LLaMA's <s>).
  virtual std::vector<int32_t> Encode(absl::string_view text, bool add_special_tokens = true) const = 0;
  // Ids outside the vocabulary are ignored. Invalid UTF-8 in the result becomes U+FFFD.
  virtual std::string Decode(absl::Span<const int32_t> ids, bool skip_special_tokens = true) const = 0;
  // One more than the largest id the tokenizer can produce (model vocabulary and added tokens).
  virtual int32_t vocab_size() const = 0;

  // The id of a token given by its vocabulary string (e.g. "</s>", "<|eot_id|>"), or -1.
  virtual int32_t TokenToId(absl::string_view token) const = 0;
  // The vocabulary string of an id ("" when out of range).
  virtual std::string IdToToken(int32_t id) const = 0;
  // Whether id is a special token (dropped by Decode when skip_special_tokens is set).
  virtual bool IsSpecial(int32_t id) const = 0;
};

// Streams text as ids arrive: returns only the new complete text (holds back incomplete UTF-8
// and pieces whose text depends on later tokens), so generated text can be printed as produced.
// The concatenation of every Push and the final Flush equals Decode of all ids.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& t, bool skip_special_tokens = true);
  std::string Push(int32_t id);
  // Returns whatever text is still held back and resets the stream.
  std::string Flush();

 private:
  const Tokenizer& tokenizer_;
  bool skip_special_tokens_;
  std::vector<int32_t> ids_;  // ids from prefix_offset_ on: the context for the next decode
  size_t read_offset_ = 0;    // ids_[0, read_offset_) produced text already returned
};

}  // namespace chai

#endif  // CHAI_RUNTIME_TOKENIZER_TOKENIZER_H_
