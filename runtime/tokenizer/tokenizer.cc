// Tokenizer::FromDirectory and StreamDecoder.
#include "runtime/tokenizer/tokenizer.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "runtime/tokenizer/load_util.h"

namespace chai {

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromDirectory(const std::string& dir) {
  if (!IsDirectory(dir)) return FileError(dir, absl::StatusCode::kNotFound, "not a directory");
  const std::string json = JoinPath(dir, "tokenizer.json");
  const std::string vocab = JoinPath(dir, "vocab.json");
  const std::string merges = JoinPath(dir, "merges.txt");
  const std::string sp_model = JoinPath(dir, "tokenizer.model");
  if (FileExists(json)) {
    auto tokenizer = FromTokenizerJson(json);
    // A tokenizer.json this build cannot run (e.g. a Unigram model) may sit next to a
    // tokenizer.model that it can.
    if (tokenizer.ok() || !absl::IsUnimplemented(tokenizer.status()) || !FileExists(sp_model) ||
        !SentencePieceAvailable()) {
      return tokenizer;
    }
    return FromSentencePieceModel(sp_model, dir);
  }
  if (FileExists(vocab) && FileExists(merges)) return FromVocabAndMerges(vocab, merges, dir);
  if (FileExists(sp_model)) return FromSentencePieceModel(sp_model, dir);
  return FileError(dir, absl::StatusCode::kNotFound,
                   "no tokenizer found (expected tokenizer.json, vocab.json + merges.txt, or tokenizer.model)");
}

StreamDecoder::StreamDecoder(const Tokenizer& t, bool skip_special_tokens)
    : tokenizer_(t), skip_special_tokens_(skip_special_tokens) {}

// Decodes the window twice, without and with the new ids, and returns the difference once it is
// final: the longer text must extend the shorter one and must not end in U+FFFD (an incomplete
// UTF-8 sequence, which the next byte token may complete). Then the window moves up so that it
// keeps the last emitted ids as context (decoders such as Metaspace treat the first token apart).
std::string StreamDecoder::Push(int32_t id) {
  ids_.push_back(id);
  const std::string prefix = tokenizer_.Decode(absl::MakeConstSpan(ids_.data(), read_offset_), skip_special_tokens_);
  const std::string full = tokenizer_.Decode(ids_, skip_special_tokens_);
  if (full.size() <= prefix.size() || !absl::StartsWith(full, prefix) || absl::EndsWith(full, "\xEF\xBF\xBD")) {
    return "";
  }
  ids_.erase(ids_.begin(), ids_.begin() + read_offset_);
  read_offset_ = ids_.size();
  return full.substr(prefix.size());
}

std::string StreamDecoder::Flush() {
  const std::string prefix = tokenizer_.Decode(absl::MakeConstSpan(ids_.data(), read_offset_), skip_special_tokens_);
  const std::string full = tokenizer_.Decode(ids_, skip_special_tokens_);
  ids_.clear();
  read_offset_ = 0;
  if (full.size() >= prefix.size() && absl::StartsWith(full, prefix)) return full.substr(prefix.size());
  return full;
}

}  // namespace chai
