#include "runtime/model_config.h"

#include <filesystem>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace chai {
namespace {

absl::Status Invalid(absl::string_view what) { return absl::InvalidArgumentError(what); }

// Reads an integer key into *out; missing keys are errors unless a fallback is allowed.
absl::Status ReadInt(const Json& j, absl::string_view key, int* out, bool required = true) {
  if (j.Find(key) == nullptr && !required) return absl::OkStatus();
  auto v = GetInt(j, key);
  if (!v.ok()) return v.status();
  *out = static_cast<int>(*v);
  return absl::OkStatus();
}

// eos/bos may be an int, a list (first one wins) or null.
int TokenId(const Json& j, absl::string_view key) {
  const Json* v = j.Find(key);
  if (v == nullptr) return -1;
  if (v->is_number()) return static_cast<int>(v->as_double());
  if (v->is_array() && !v->as_array().empty() && v->as_array()[0].is_number()) {
    return static_cast<int>(v->as_array()[0].as_double());
  }
  return -1;
}

absl::Status ParseOpt(const Json& j, ModelConfig* c) {
  if (auto s = ReadInt(j, "ffn_dim", &c->ffn_dim); !s.ok()) return s;
  c->num_kv_heads = c->num_heads;
  c->head_dim = c->num_heads > 0 ? c->hidden_size / c->num_heads : 0;
  c->pre_layer_norm = GetBoolOr(j, "do_layer_norm_before", true);
  c->final_layer_norm = c->pre_layer_norm && !GetBoolOr(j, "_remove_final_layer_norm", false);
  c->word_embed_proj_dim = static_cast<int>(GetIntOr(j, "word_embed_proj_dim", c->hidden_size));
  c->enable_bias = GetBoolOr(j, "enable_bias", true);
  c->tie_word_embeddings = GetBoolOr(j, "tie_word_embeddings", true);
  std::string act = GetStringOr(j, "activation_function", "relu");
  if (act != "relu") return Invalid(absl::StrCat("unsupported OPT activation_function '", act, "' (relu only)"));
  if (!GetBoolOr(j, "layer_norm_elementwise_affine", true)) {
    return Invalid("unsupported OPT layer_norm_elementwise_affine=false");
  }
  if (c->word_embed_proj_dim <= 0) return Invalid("word_embed_proj_dim must be positive");
  return absl::OkStatus();
}

absl::Status ParseLlama(const Json& j, ModelConfig* c) {
  if (auto s = ReadInt(j, "intermediate_size", &c->ffn_dim); !s.ok()) return s;
  c->num_kv_heads = c->num_heads;
  if (auto s = ReadInt(j, "num_key_value_heads", &c->num_kv_heads, false); !s.ok()) return s;
  c->head_dim = c->num_heads > 0 ? c->hidden_size / c->num_heads : 0;
  if (const Json* hd = j.Find("head_dim"); hd != nullptr && !hd->is_null()) {
    if (auto s = ReadInt(j, "head_dim", &c->head_dim); !s.ok()) return s;
  }
  c->rms_norm_eps = static_cast<float>(GetDoubleOr(j, "rms_norm_eps", 1e-6));
  c->tie_word_embeddings = GetBoolOr(j, "tie_word_embeddings", false);
  c->attention_bias = GetBoolOr(j, "attention_bias", false);
  c->mlp_bias = GetBoolOr(j, "mlp_bias", false);
  std::string act = GetStringOr(j, "hidden_act", "silu");
  if (act != "silu") return Invalid(absl::StrCat("unsupported LLaMA hidden_act '", act, "' (silu only)"));
  // rope_theta lives at the top level (older configs) or in rope_parameters (transformers 5).
  c->rope_theta = static_cast<float>(GetDoubleOr(j, "rope_theta", 10000.0));
  for (const char* key : {"rope_parameters", "rope_scaling"}) {
    const Json* rp = j.Find(key);
    if (rp == nullptr || !rp->is_object()) continue;
    c->rope_theta = static_cast<float>(GetDoubleOr(*rp, "rope_theta", c->rope_theta));
    std::string type = GetStringOr(*rp, "rope_type", GetStringOr(*rp, "type", "default"));
    if (type != "default") return Invalid(absl::StrCat("unsupported rope_type '", type, "' (default only)"));
  }
  if (c->head_dim <= 0 || c->head_dim % 2 != 0) return Invalid("head_dim must be a positive even number");
  return absl::OkStatus();
}

}  // namespace

int64_t ModelConfig::ParameterCount() const {
  const int64_t h = hidden_size, q = int64_t{num_heads} * head_dim, kv = int64_t{num_kv_heads} * head_dim;
  int64_t per_layer = h * q + 2 * h * kv + q * h;
  per_layer += (arch == Arch::kLlama ? 3 : 2) * h * ffn_dim;
  int64_t total = per_layer * num_layers + int64_t{vocab_size} * embed_dim();
  if (!tie_word_embeddings) total += int64_t{vocab_size} * embed_dim();
  if (arch == Arch::kOpt) total += int64_t{max_positions + position_offset} * h;
  return total;
}

absl::StatusOr<ModelConfig> ParseModelConfig(const Json& j) {
  if (!j.is_object()) return Invalid("config is not a JSON object");
  ModelConfig c;
  c.model_type = GetStringOr(j, "model_type", "");
  if (c.model_type == "opt") {
    c.arch = Arch::kOpt;
  } else if (c.model_type == "llama") {
    c.arch = Arch::kLlama;
  } else {
    return absl::UnimplementedError(absl::StrCat("unsupported architecture: model_type '", c.model_type,
                                                 "' (supported: opt, llama)"));
  }
  for (auto [key, field] : {std::pair{"vocab_size", &c.vocab_size}, {"hidden_size", &c.hidden_size},
                            {"num_hidden_layers", &c.num_layers}, {"num_attention_heads", &c.num_heads},
                            {"max_position_embeddings", &c.max_positions}}) {
    if (auto s = ReadInt(j, key, field); !s.ok()) return s;
  }
  if (c.vocab_size <= 0 || c.hidden_size <= 0 || c.num_layers <= 0 || c.num_heads <= 0 || c.max_positions <= 0) {
    return Invalid("vocab_size, hidden_size, num_hidden_layers, num_attention_heads and "
                   "max_position_embeddings must be positive");
  }
  c.bos_token_id = TokenId(j, "bos_token_id");
  c.eos_token_id = TokenId(j, "eos_token_id");
  auto s = c.arch == Arch::kOpt ? ParseOpt(j, &c) : ParseLlama(j, &c);
  if (!s.ok()) return s;
  if (c.ffn_dim <= 0) return Invalid("the feed-forward size must be positive");
  if (c.num_kv_heads <= 0 || c.num_heads % c.num_kv_heads != 0) {
    return Invalid(absl::StrCat("num_attention_heads (", c.num_heads, ") is not a multiple of num_key_value_heads (",
                                c.num_kv_heads, ")"));
  }
  if (c.arch == Arch::kOpt && c.hidden_size % c.num_heads != 0) {
    return Invalid("hidden_size is not a multiple of num_attention_heads");
  }
  return c;
}

absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& path) {
  std::string file = path;
  if (std::filesystem::is_directory(path)) file = path + "/config.json";
  auto json = ReadJsonFile(file);
  if (!json.ok()) return json.status();
  auto config = ParseModelConfig(*json);
  if (!config.ok()) return absl::Status(config.status().code(), absl::StrCat(file, ": ", config.status().message()));
  return config;
}

}  // namespace chai
