// Tokenizer::FromTokenizerJson: builds an HfTokenizer from a Hugging Face tokenizer.json.
#include <utility>

#include "absl/strings/str_cat.h"
#include "runtime/json.h"
#include "runtime/tokenizer/hf_tokenizer.h"
#include "runtime/tokenizer/load_util.h"
#include "runtime/tokenizer/tokenizer.h"

namespace chai {
namespace {

absl::Status Invalid(absl::string_view what) { return absl::InvalidArgumentError(what); }

// Adds the JSON key to a component's error ("pre_tokenizer: ...").
absl::Status InKey(absl::string_view key, const absl::Status& s) {
  return absl::Status(s.code(), absl::StrCat(key, ": ", s.message()));
}

absl::StatusOr<int32_t> ParseId(const Json& v) {
  auto id = v.AsInt();
  if (!id.ok() || *id < 0 || *id > INT32_MAX) return Invalid("not a valid token id");
  return static_cast<int32_t>(*id);
}

absl::Status ParseVocab(const Json& model, std::vector<std::pair<std::string, int32_t>>* vocab) {
  const Json* v = model.Find("vocab");
  if (v == nullptr) return Invalid("model has no \"vocab\"");
  if (!v->is_object()) return Invalid("model.vocab is not an object of token -> id");
  vocab->reserve(v->as_object().size());
  for (const auto& [token, id_json] : v->as_object()) {
    auto id = ParseId(id_json);
    if (!id.ok()) return Invalid(absl::StrCat("model.vocab[\"", token, "\"] is not a valid token id"));
    vocab->emplace_back(token, *id);
  }
  return absl::OkStatus();
}

// Merges are "left right" strings (older files) or ["left", "right"] pairs (tokenizers >= 0.20).
absl::Status ParseMerges(const Json& model, std::vector<std::pair<std::string, std::string>>* merges) {
  const Json* m = model.Find("merges");
  if (m == nullptr) return Invalid("model has no \"merges\"");
  if (!m->is_array()) return Invalid("model.merges is not an array");
  merges->reserve(m->as_array().size());
  size_t i = 0;
  for (const Json& item : m->as_array()) {
    if (item.is_string()) {
      const std::string& s = item.as_string();
      const size_t space = s.find(' ');
      if (space == std::string::npos || space == 0 || space + 1 == s.size() || s.find(' ', space + 1) != std::string::npos) {
        return Invalid(absl::StrCat("model.merges[", i, "] \"", s, "\" is not two tokens separated by one space"));
      }
      merges->emplace_back(s.substr(0, space), s.substr(space + 1));
    } else if (item.is_array() && item.as_array().size() == 2 && item.as_array()[0].is_string() &&
               item.as_array()[1].is_string()) {
      merges->emplace_back(item.as_array()[0].as_string(), item.as_array()[1].as_string());
    } else {
      return Invalid(absl::StrCat("model.merges[", i, "] is neither \"a b\" nor [\"a\", \"b\"]"));
    }
    ++i;
  }
  return absl::OkStatus();
}

absl::Status ParseBpeConfig(const Json& model, bool byte_level, BpeConfig* config) {
  config->byte_level = byte_level;
  config->byte_fallback = GetBoolOr(model, "byte_fallback", false);
  config->fuse_unk = GetBoolOr(model, "fuse_unk", false);
  config->ignore_merges = GetBoolOr(model, "ignore_merges", false);
  if (const Json* unk = model.Find("unk_token"); unk && !unk->is_null()) {
    if (!unk->is_string()) return Invalid("model.unk_token is not a string");
    config->unk_token = unk->as_string();
  }
  if (const Json* d = model.Find("dropout"); d && !d->is_null()) {
    if (!d->is_number()) return Invalid("model.dropout is not a number");
    if (d->as_double() > 0) return absl::UnimplementedError("BPE dropout is not supported (it is for training)");
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    const Json* v = model.Find(key);
    if (v && v->is_string() && !v->as_string().empty()) {
      return absl::UnimplementedError(absl::StrCat("model.", key, " is not supported"));
    }
  }
  return absl::OkStatus();
}

absl::Status ParseAddedTokens(const Json& root, std::vector<AddedToken>* tokens) {
  const Json* list = root.Find("added_tokens");
  if (list == nullptr || list->is_null()) return absl::OkStatus();
  if (!list->is_array()) return Invalid("added_tokens is not an array");
  size_t i = 0;
  for (const Json& item : list->as_array()) {
    const Json* id = item.Find("id");
    const Json* content = item.Find("content");
    auto parsed_id = id ? ParseId(*id) : absl::StatusOr<int32_t>(Invalid(""));
    if (!parsed_id.ok() || content == nullptr || !content->is_string() || content->as_string().empty()) {
      return Invalid(absl::StrCat("added_tokens[", i, "] needs an id and a non-empty content"));
    }
    AddedToken t;
    t.id = *parsed_id;
    t.content = content->as_string();
    t.special = GetBoolOr(item, "special", false);
    t.single_word = GetBoolOr(item, "single_word", false);
    t.lstrip = GetBoolOr(item, "lstrip", false);
    t.rstrip = GetBoolOr(item, "rstrip", false);
    t.normalized = GetBoolOr(item, "normalized", !t.special);
    tokens->push_back(std::move(t));
    ++i;
  }
  return absl::OkStatus();
}

const Json& MemberOrNull(const Json& root, absl::string_view key) {
  static const Json* null_json = new Json();
  const Json* v = root.Find(key);
  return v ? *v : *null_json;
}

absl::StatusOr<std::unique_ptr<Tokenizer>> BuildFromJson(const Json& root) {
  if (!root.is_object()) return Invalid("the top level is not a JSON object");
  const Json* model = root.Find("model");
  if (model == nullptr || !model->is_object()) return Invalid("no \"model\" object");
  const std::string type = GetStringOr(*model, "type", model->Find("merges") ? "BPE" : "");
  if (type != "BPE") {
    return absl::UnimplementedError(
        absl::StrCat("model type \"", type.empty() ? "(none)" : type, "\" is not supported (only BPE)"));
  }

  HfTokenizerParts parts;
  auto normalizer = ParseNormalizer(MemberOrNull(root, "normalizer"));
  if (!normalizer.ok()) return InKey("normalizer", normalizer.status());
  parts.normalizer = std::move(*normalizer);
  auto pre = ParsePreTokenizer(MemberOrNull(root, "pre_tokenizer"));
  if (!pre.ok()) return InKey("pre_tokenizer", pre.status());
  parts.pre_tokenizer = std::move(pre->pre_tokenizer);
  auto post = ParsePostProcessor(MemberOrNull(root, "post_processor"));
  if (!post.ok()) return InKey("post_processor", post.status());
  parts.post_processor = std::move(*post);
  auto decoder = ParseDecoder(MemberOrNull(root, "decoder"));
  if (!decoder.ok()) return InKey("decoder", decoder.status());
  parts.decoder = std::move(*decoder);
  if (absl::Status s = ParseAddedTokens(root, &parts.added_tokens); !s.ok()) return s;

  std::vector<std::pair<std::string, int32_t>> vocab;
  std::vector<std::pair<std::string, std::string>> merges;
  BpeConfig config;
  if (absl::Status s = ParseVocab(*model, &vocab); !s.ok()) return s;
  if (absl::Status s = ParseMerges(*model, &merges); !s.ok()) return s;
  if (absl::Status s = ParseBpeConfig(*model, pre->byte_level, &config); !s.ok()) return s;
  auto bpe = BpeModel::Create(vocab, merges, config);
  if (!bpe.ok()) return InKey("model", bpe.status());
  parts.model = std::move(*bpe);
  return std::unique_ptr<Tokenizer>(new HfTokenizer(std::move(parts)));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromTokenizerJson(const std::string& path) {
  if (!FileExists(path)) return FileError(path, absl::StatusCode::kNotFound, "no such file");
  auto root = ReadJsonFile(path);
  if (!root.ok()) return FileError(path, root.status());
  auto tokenizer = BuildFromJson(*root);
  if (!tokenizer.ok()) return FileError(path, tokenizer.status());
  return tokenizer;
}

}  // namespace chai
