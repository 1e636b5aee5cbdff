// Decoders of tokenizer.json ("decoder" key): turn the token strings of an id sequence back into
// text. As in Hugging Face, a decoder maps a list of token strings to a new list; the final text is
// their concatenation.
//
// Supported: ByteLevel, Metaspace, Replace (string patterns), ByteFallback, Fuse, Strip, Sequence.
#ifndef CHAI_RUNTIME_TOKENIZER_DECODER_H_
#define CHAI_RUNTIME_TOKENIZER_DECODER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/json.h"

namespace chai {

class Decoder {
 public:
  virtual ~Decoder() = default;
  virtual void DecodeChain(std::vector<std::string>* tokens) const = 0;
};

// Builds the decoder a tokenizer.json "decoder" value describes; nullptr for JSON null.
absl::StatusOr<std::unique_ptr<Decoder>> ParseDecoder(const Json& json);

// The byte-level decoder on its own (for vocab.json + merges.txt tokenizers).
std::unique_ptr<Decoder> MakeByteLevelDecoder();

}  // namespace chai

#endif  // CHAI_RUNTIME_TOKENIZER_DECODER_H_
