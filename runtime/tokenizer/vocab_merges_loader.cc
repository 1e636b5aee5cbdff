// Tokenizer::FromVocabAndMerges: GPT-2/OPT byte-level BPE from vocab.json + merges.txt, with the
// special tokens and add_bos_token setting of the transformers files beside them.
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "runtime/json.h"
#include "runtime/tokenizer/hf_tokenizer.h"
#include "runtime/tokenizer/load_util.h"
#include "runtime/tokenizer/tokenizer.h"
#include "runtime/tokenizer/tokenizer_config.h"

namespace chai {
namespace {

absl::Status ReadVocab(const std::string& path, std::vector<std::pair<std::string, int32_t>>* vocab) {
  if (!FileExists(path)) return FileError(path, absl::StatusCode::kNotFound, "no such file");
  auto json = ReadJsonFile(path);
  if (!json.ok()) return FileError(path, json.status());
  if (!json->is_object()) return FileError(path, absl::StatusCode::kInvalidArgument, "not an object of token -> id");
  for (const auto& [token, id_json] : json->as_object()) {
    auto id = id_json.AsInt();
    if (!id.ok() || *id < 0 || *id > INT32_MAX) {
      return FileError(path, absl::StatusCode::kInvalidArgument, absl::StrCat("token \"", token, "\" has a bad id"));
    }
    vocab->emplace_back(token, static_cast<int32_t>(*id));
  }
  if (vocab->empty()) return FileError(path, absl::StatusCode::kInvalidArgument, "the vocabulary is empty");
  return absl::OkStatus();
}

absl::Status ReadMerges(const std::string& path, std::vector<std::pair<std::string, std::string>>* merges) {
  auto text = ReadFileToString(path);
  if (!text.ok()) return FileError(path, absl::StatusCode::kNotFound, "no such file or unreadable");
  size_t line_no = 0;
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty() || (line_no == 1 && line.substr(0, 8) == "#version")) continue;
    std::vector<absl::string_view> parts = absl::StrSplit(line, ' ');
    if (parts.size() != 2 || parts[0].empty() || parts[1].empty()) {
      return FileError(path, absl::StatusCode::kInvalidArgument,
                       absl::StrCat("line ", line_no, " is not two tokens separated by one space"));
    }
    merges->emplace_back(std::string(parts[0]), std::string(parts[1]));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromVocabAndMerges(const std::string& vocab_json,
                                                                         const std::string& merges_txt,
                                                                         const std::string& config_dir) {
  std::vector<std::pair<std::string, int32_t>> vocab;
  std::vector<std::pair<std::string, std::string>> merges;
  if (absl::Status s = ReadVocab(vocab_json, &vocab); !s.ok()) return s;
  if (absl::Status s = ReadMerges(merges_txt, &merges); !s.ok()) return s;
  auto config = ReadTokenizerConfig(config_dir);
  if (!config.ok()) return config.status();

  BpeConfig bpe_config;
  bpe_config.byte_level = true;
  auto model = BpeModel::Create(vocab, merges, bpe_config);
  if (!model.ok()) return FileError(merges_txt, model.status());

  HfTokenizerParts parts;
  parts.model = std::move(*model);
  // Special tokens: ids from the config files, else from the vocabulary; tokens in neither are dropped.
  for (AddedToken t : config->tokens) {
    if (t.id < 0) t.id = parts.model->TokenToId(t.content);
    if (t.id >= 0) parts.added_tokens.push_back(std::move(t));
  }
  auto id_of = [&](const std::string& content) -> int32_t {
    for (const AddedToken& t : parts.added_tokens) {
      if (t.content == content) return t.id;
    }
    return -1;
  };
  // OPT prepends its bos token "</s>"; the original files say so with add_bos_token, and a config
  // that does not say is read as OPT's default when config.json names an OPT model.
  const bool add_bos = config->add_bos_token.value_or(config->model_type == "opt");
  std::string bos = config->bos_token;
  if (bos.empty() && config->model_type == "opt") bos = "</s>";
  std::vector<int32_t> prefix, suffix;
  if (add_bos) {
    int32_t id = id_of(bos);
    if (id < 0) id = parts.model->TokenToId(bos);
    if (id < 0) {
      return FileError(JoinPath(config_dir, "tokenizer_config.json"), absl::StatusCode::kInvalidArgument,
                       absl::StrCat("add_bos_token is set but bos_token \"", bos, "\" is not in ", vocab_json));
    }
    prefix.push_back(id);
  }
  if (config->add_eos_token.value_or(false)) {
    const int32_t id = id_of(config->eos_token);
    if (id < 0) {
      return FileError(JoinPath(config_dir, "tokenizer_config.json"), absl::StatusCode::kInvalidArgument,
                       absl::StrCat("add_eos_token is set but eos_token \"", config->eos_token, "\" is unknown"));
    }
    suffix.push_back(id);
  }
  if (!prefix.empty() || !suffix.empty()) {
    parts.post_processor = std::make_unique<AffixPostProcessor>(std::move(prefix), std::move(suffix));
  }
  Json pre = Json::MakeObject();
  pre.Set("type", "ByteLevel");
  pre.Set("add_prefix_space", config->add_prefix_space.value_or(false));
  auto pre_tokenizer = ParsePreTokenizer(pre);
  if (!pre_tokenizer.ok()) return pre_tokenizer.status();
  parts.pre_tokenizer = std::move(pre_tokenizer->pre_tokenizer);
  parts.decoder = MakeByteLevelDecoder();
  return std::unique_ptr<Tokenizer>(new HfTokenizer(std::move(parts)));
}

}  // namespace chai
