#include "runtime/tokenizer/tokenizer_config.h"

#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "runtime/json.h"
#include "runtime/tokenizer/load_util.h"

namespace chai {
namespace {

constexpr const char* kSpecialKeys[] = {"bos_token", "eos_token", "unk_token", "sep_token",
                                        "pad_token", "cls_token", "mask_token"};

AddedToken* FindOrAdd(TokenizerConfig* config, const std::string& content) {
  for (AddedToken& t : config->tokens) {
    if (t.content == content) return &t;
  }
  config->tokens.push_back(AddedToken{content});
  return &config->tokens.back();
}

// A token given as "text" or {"content": "text", "lstrip": ..., ...}; records it as special.
absl::Status AddSpecial(const Json& value, TokenizerConfig* config, std::string* content_out) {
  if (value.is_null()) return absl::OkStatus();
  std::string content;
  if (value.is_string()) {
    content = value.as_string();
  } else if (value.is_object() && value.Find("content") && value.Find("content")->is_string()) {
    content = value.Find("content")->as_string();
  } else {
    return absl::InvalidArgumentError("a special token is neither a string nor {\"content\": ...}");
  }
  if (content.empty()) return absl::OkStatus();
  AddedToken* t = FindOrAdd(config, content);
  t->special = true;
  if (value.is_object()) {
    t->lstrip = GetBoolOr(value, "lstrip", t->lstrip);
    t->rstrip = GetBoolOr(value, "rstrip", t->rstrip);
    t->single_word = GetBoolOr(value, "single_word", t->single_word);
    t->normalized = GetBoolOr(value, "normalized", t->normalized);
  }
  if (content_out) *content_out = content;
  return absl::OkStatus();
}

absl::Status ReadSpecialTokens(const Json& json, TokenizerConfig* config) {
  for (const char* key : kSpecialKeys) {
    const Json* v = json.Find(key);
    if (v == nullptr) continue;
    std::string* out = std::string(key) == "bos_token" ? &config->bos_token
                       : std::string(key) == "eos_token" ? &config->eos_token
                                                         : nullptr;
    if (absl::Status s = AddSpecial(*v, config, out); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("\"", key, "\": ", s.message()));
    }
  }
  if (const Json* extra = json.Find("additional_special_tokens"); extra && extra->is_array()) {
    for (const Json& v : extra->as_array()) {
      if (absl::Status s = AddSpecial(v, config, nullptr); !s.ok()) {
        return absl::InvalidArgumentError(absl::StrCat("\"additional_special_tokens\": ", s.message()));
      }
    }
  }
  return absl::OkStatus();
}

// transformers >= 4.34 writes {"added_tokens_decoder": {"<id>": {"content": ..., "special": ...}}}.
absl::Status ReadAddedTokensDecoder(const Json& json, TokenizerConfig* config) {
  const Json* decoder = json.Find("added_tokens_decoder");
  if (decoder == nullptr || !decoder->is_object()) return absl::OkStatus();
  for (const auto& [key, value] : decoder->as_object()) {
    char* end = nullptr;
    const long id = std::strtol(key.c_str(), &end, 10);
    const Json* content = value.Find("content");
    if (key.empty() || *end != '\0' || id < 0 || content == nullptr || !content->is_string()) {
      return absl::InvalidArgumentError(absl::StrCat("\"added_tokens_decoder\": bad entry \"", key, "\""));
    }
    AddedToken* t = FindOrAdd(config, content->as_string());
    t->id = static_cast<int32_t>(id);
    t->special = GetBoolOr(value, "special", t->special);
    t->lstrip = GetBoolOr(value, "lstrip", t->lstrip);
    t->rstrip = GetBoolOr(value, "rstrip", t->rstrip);
    t->single_word = GetBoolOr(value, "single_word", t->single_word);
    t->normalized = GetBoolOr(value, "normalized", t->normalized);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<Json>> ReadOptionalJson(const std::string& path) {
  if (!FileExists(path)) return std::optional<Json>();
  auto json = ReadJsonFile(path);
  if (!json.ok()) return FileError(path, json.status());
  if (!json->is_object()) return FileError(path, absl::StatusCode::kInvalidArgument, "not a JSON object");
  return std::optional<Json>(std::move(*json));
}

}  // namespace

absl::StatusOr<TokenizerConfig> ReadTokenizerConfig(const std::string& dir) {
  TokenizerConfig config;
  if (dir.empty()) return config;

  // config.json belongs to the model; a broken one is reported by the model loader, not here.
  if (auto model = ReadJsonFile(JoinPath(dir, "config.json")); model.ok()) {
    config.model_type = GetStringOr(*model, "model_type", "");
  }

  const std::string map_path = JoinPath(dir, "special_tokens_map.json");
  auto special_map = ReadOptionalJson(map_path);
  if (!special_map.ok()) return special_map.status();
  if (special_map->has_value()) {
    if (absl::Status s = ReadSpecialTokens(**special_map, &config); !s.ok()) return FileError(map_path, s);
  }

  const std::string config_path = JoinPath(dir, "tokenizer_config.json");
  auto tok_config = ReadOptionalJson(config_path);
  if (!tok_config.ok()) return tok_config.status();
  if (tok_config->has_value()) {
    const Json& j = **tok_config;
    if (absl::Status s = ReadSpecialTokens(j, &config); !s.ok()) return FileError(config_path, s);
    if (absl::Status s = ReadAddedTokensDecoder(j, &config); !s.ok()) return FileError(config_path, s);
    if (const Json* v = j.Find("add_bos_token"); v && v->is_bool()) config.add_bos_token = v->as_bool();
    if (const Json* v = j.Find("add_eos_token"); v && v->is_bool()) config.add_eos_token = v->as_bool();
    if (const Json* v = j.Find("add_prefix_space"); v && v->is_bool()) config.add_prefix_space = v->as_bool();
  }

  const std::string added_path = JoinPath(dir, "added_tokens.json");
  auto added = ReadOptionalJson(added_path);
  if (!added.ok()) return added.status();
  if (added->has_value()) {
    for (const auto& [content, id_json] : (*added)->as_object()) {
      auto id = id_json.AsInt();
      if (!id.ok() || *id < 0 || *id > INT32_MAX) {
        return FileError(added_path, absl::StatusCode::kInvalidArgument,
                         absl::StrCat("token \"", content, "\" has a bad id"));
      }
      FindOrAdd(&config, content)->id = static_cast<int32_t>(*id);
    }
  }
  return config;
}

}  // namespace chai
