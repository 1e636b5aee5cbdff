// Only this file sees sentencepiece_processor.h (see sentencepiece_shim.h for why).
#include "runtime/tokenizer/sentencepiece_shim.h"

#ifdef CHAI_WITH_SENTENCEPIECE
#include <sentencepiece_processor.h>
#endif

namespace chai {
namespace sp_shim {

#ifdef CHAI_WITH_SENTENCEPIECE

bool Available() { return true; }

namespace {

class RealProcessor : public Processor {
 public:
  sentencepiece::SentencePieceProcessor sp;

  std::vector<int> Encode(std::string_view text) const override {
    std::vector<int> ids;
    sp.Encode(text, &ids).IgnoreError();  // fails only when no model is loaded
    return ids;
  }
  std::string Decode(const std::vector<int>& ids) const override {
    // DecodeIds rejects out-of-range ids; drop them like the other tokenizers do.
    std::vector<int> valid;
    valid.reserve(ids.size());
    for (int id : ids) {
      if (id >= 0 && id < sp.GetPieceSize()) valid.push_back(id);
    }
    std::string text;
    sp.Decode(valid, &text).IgnoreError();
    return text;
  }
  int size() const override { return sp.GetPieceSize(); }
  std::string IdToPiece(int id) const override {
    return (id >= 0 && id < sp.GetPieceSize()) ? sp.IdToPiece(id) : std::string();
  }
  int PieceToId(std::string_view piece) const override {
    const int id = sp.PieceToId(piece);
    return (id >= 0 && sp.IdToPiece(id) == piece) ? id : -1;  // unknown pieces map to unk_id
  }
  bool IsControl(int id) const override { return sp.IsControl(id); }
  bool IsUnknown(int id) const override { return sp.IsUnknown(id); }
  int bos_id() const override { return sp.bos_id(); }
  int eos_id() const override { return sp.eos_id(); }
};

}  // namespace

std::unique_ptr<Processor> Processor::Load(const std::string& path, std::string* error) {
  auto p = std::make_unique<RealProcessor>();
  const auto status = p->sp.Load(path);
  if (!status.ok()) {
    *error = status.ToString();
    return nullptr;
  }
  return p;
}

#else  // !CHAI_WITH_SENTENCEPIECE

bool Available() { return false; }

std::unique_ptr<Processor> Processor::Load(const std::string& path, std::string* error) {
  *error =
      "this build of chai lacks sentencepiece, so it cannot read tokenizer.model files (install "
      "libsentencepiece-dev and reconfigure, or use a checkpoint with tokenizer.json)";
  return nullptr;
}

#endif

}  // namespace sp_shim
}  // namespace chai
