// A thin wrapper over libsentencepiece's SentencePieceProcessor.
//
// Why a separate layer: Debian's sentencepiece_processor.h declares `namespace absl { using
// std::string_view; }`, which collides with Debian Abseil's own absl::string_view class. So the
// library's header may only be included in sentencepiece_shim.cc, and this header must include no
// Abseil header either. When the build has no sentencepiece, Load fails with a message saying so.
#ifndef CHAI_RUNTIME_TOKENIZER_SENTENCEPIECE_SHIM_H_
#define CHAI_RUNTIME_TOKENIZER_SENTENCEPIECE_SHIM_H_

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace chai {
namespace sp_shim {

// Whether the build links libsentencepiece.
bool Available();

class Processor {
 public:
  virtual ~Processor() = default;
  // Loads a tokenizer.model; nullptr with *error set (without the path) on failure.
  static std::unique_ptr<Processor> Load(const std::string& path, std::string* error);

  virtual std::vector<int> Encode(std::string_view text) const = 0;
  virtual std::string Decode(const std::vector<int>& ids) const = 0;
  virtual int size() const = 0;
  virtual std::string IdToPiece(int id) const = 0;
  // -1 when piece is not in the vocabulary.
  virtual int PieceToId(std::string_view piece) const = 0;
  virtual bool IsControl(int id) const = 0;
  virtual bool IsUnknown(int id) const = 0;
  virtual int bos_id() const = 0;  // -1 when the model has none
  virtual int eos_id() const = 0;
};

}  // namespace sp_shim
}  // namespace chai

#endif  // CHAI_RUNTIME_TOKENIZER_SENTENCEPIECE_SHIM_H_
