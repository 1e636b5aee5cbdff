// Pre-tokenizers of tokenizer.json ("pre_tokenizer" key): they cut normalized text into the words
// the BPE model encodes one by one.
//
// Supported: ByteLevel (GPT-2 regex split + byte-level model input), Metaspace (SentencePiece-style
// "▁" for spaces), Split with a string pattern or one of the regexes regex_split.h knows, and
// Sequence of these with ByteLevel, if present, last.
#ifndef CHAI_RUNTIME_TOKENIZER_PRE_TOKENIZER_H_
#define CHAI_RUNTIME_TOKENIZER_PRE_TOKENIZER_H_

#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "runtime/json.h"

namespace chai {

// A piece of text on its way to the model. at_start: the piece begins the input text (Metaspace's
// prepend_scheme "first" only adds "▁" there).
struct Piece {
  absl::string_view text;
  bool at_start = false;
};

// Owns text that pre-tokenizers create (pieces that are not views of the input).
class PieceArena {
 public:
  absl::string_view Own(std::string s) {
    strings_.push_back(std::move(s));
    return strings_.back();
  }

 private:
  std::deque<std::string> strings_;
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Replaces *pieces with their splits; empty pieces are dropped.
  virtual void Split(std::vector<Piece>* pieces, PieceArena* arena) const = 0;
};

struct ParsedPreTokenizer {
  std::unique_ptr<PreTokenizer> pre_tokenizer;  // nullptr: the whole piece is one word
  // A ByteLevel step ends the chain: words reach the model as raw bytes and the vocabulary is
  // written in the byte_level.h alphabet.
  bool byte_level = false;
};

absl::StatusOr<ParsedPreTokenizer> ParsePreTokenizer(const Json& json);

}  // namespace chai

#endif  // CHAI_RUNTIME_TOKENIZER_PRE_TOKENIZER_H_
