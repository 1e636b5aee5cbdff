// Tokenizer::FromSentencePieceModel: original LLaMA tokenizer.model files through libsentencepiece.
//
// Matches transformers' LlamaTokenizer (legacy mode): the text of control and unknown pieces
// ("<s>", "</s>", "<unk>") in the input is encoded as that token, and the text between them is
// encoded by SentencePiece piece by piece; Encode adds <s> (add_bos_token, default on) and </s>
// (add_eos_token, default off) as tokenizer_config.json says.
#include <utility>

#include "absl/strings/str_cat.h"
#include "runtime/tokenizer/added_vocabulary.h"
#include "runtime/tokenizer/load_util.h"
#include "runtime/tokenizer/sentencepiece_shim.h"
#include "runtime/tokenizer/tokenizer.h"
#include "runtime/tokenizer/tokenizer_config.h"

namespace chai {
namespace {

class SentencePieceTokenizer : public Tokenizer {
 public:
  SentencePieceTokenizer(std::unique_ptr<sp_shim::Processor> sp, bool add_bos, bool add_eos)
      : sp_(std::move(sp)), add_bos_(add_bos && sp_->bos_id() >= 0), add_eos_(add_eos && sp_->eos_id() >= 0) {
    std::vector<std::string> patterns;
    std::vector<AddedToken> tokens;
    for (int id = 0; id < sp_->size(); ++id) {
      if (!IsSpecial(id)) continue;
      AddedToken t;
      t.id = id;
      t.content = sp_->IdToPiece(id);
      t.special = true;
      patterns.push_back(t.content);
      tokens.push_back(std::move(t));
    }
    specials_.Build(std::move(patterns), std::move(tokens));
  }

  std::vector<int32_t> Encode(absl::string_view text, bool add_special_tokens) const override {
    std::vector<int32_t> ids;
    if (add_special_tokens && add_bos_) ids.push_back(sp_->bos_id());
    std::vector<Segment> segments;
    specials_.Split(text, &segments);
    for (const Segment& seg : segments) {
      if (seg.id >= 0) {
        ids.push_back(seg.id);
        continue;
      }
      for (int id : sp_->Encode(std::string_view(seg.text.data(), seg.text.size()))) ids.push_back(id);
    }
    if (add_special_tokens && add_eos_) ids.push_back(sp_->eos_id());
    return ids;
  }

  std::string Decode(absl::Span<const int32_t> ids, bool skip_special_tokens) const override {
    std::string text;
    std::vector<int> run;
    for (int32_t id : ids) {
      if (id < 0 || id >= sp_->size()) continue;
      if (!IsSpecial(id)) {
        run.push_back(id);
        continue;
      }
      if (skip_special_tokens) continue;
      text += sp_->Decode(run);
      run.clear();
      text += sp_->IdToPiece(id);
    }
    text += sp_->Decode(run);
    return text;
  }

  int32_t vocab_size() const override { return sp_->size(); }
  int32_t TokenToId(absl::string_view token) const override {
    return sp_->PieceToId(std::string_view(token.data(), token.size()));
  }
  std::string IdToToken(int32_t id) const override { return sp_->IdToPiece(id); }
  bool IsSpecial(int32_t id) const override {
    return id >= 0 && id < sp_->size() && (sp_->IsControl(id) || sp_->IsUnknown(id));
  }

 private:
  std::unique_ptr<sp_shim::Processor> sp_;
  bool add_bos_, add_eos_;
  TokenMatcher specials_;
};

}  // namespace

bool Tokenizer::SentencePieceAvailable() { return sp_shim::Available(); }

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromSentencePieceModel(const std::string& path,
                                                                             const std::string& config_dir) {
  if (!sp_shim::Available()) {
    std::string error;
    sp_shim::Processor::Load(path, &error);
    return FileError(path, absl::StatusCode::kUnimplemented, error);
  }
  if (!FileExists(path)) return FileError(path, absl::StatusCode::kNotFound, "no such file");
  std::string error;
  std::unique_ptr<sp_shim::Processor> sp = sp_shim::Processor::Load(path, &error);
  if (sp == nullptr) {
    return FileError(path, absl::StatusCode::kInvalidArgument,
                     absl::StrCat("not a valid SentencePiece model (", error, ")"));
  }
  auto config = ReadTokenizerConfig(config_dir);
  if (!config.ok()) return config.status();
  return std::unique_ptr<Tokenizer>(new SentencePieceTokenizer(
      std::move(sp), config->add_bos_token.value_or(true), config->add_eos_token.value_or(false)));
}

}  // namespace chai
