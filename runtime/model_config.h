// Model hyper-parameters read from a Hugging Face config.json (OPT and LLaMA families).
#ifndef CHAI_RUNTIME_MODEL_CONFIG_H_
#define CHAI_RUNTIME_MODEL_CONFIG_H_

#include <string>

#include "absl/status/statusor.h"
#include "runtime/json.h"

namespace chai {

enum class Arch { kOpt, kLlama };

struct ModelConfig {
  Arch arch = Arch::kOpt;
  std::string model_type;  // "opt" or "llama" as written in config.json
  int vocab_size = 0;
  int hidden_size = 0;
  int num_layers = 0;
  int num_heads = 0;
  int num_kv_heads = 0;  // == num_heads without GQA
  int head_dim = 0;
  int ffn_dim = 0;       // OPT ffn_dim / LLaMA intermediate_size
  int max_positions = 0;
  int bos_token_id = -1;
  int eos_token_id = -1;
  bool tie_word_embeddings = true;

  // OPT
  bool pre_layer_norm = true;     // do_layer_norm_before
  bool final_layer_norm = true;   // pre-LN models end with a LayerNorm (unless removed)
  int word_embed_proj_dim = 0;    // != hidden_size: project_in / project_out exist
  bool enable_bias = true;
  int position_offset = 2;        // OPT's learned positions start at row 2
  float layer_norm_eps = 1e-5f;

  // LLaMA
  float rms_norm_eps = 1e-6f;
  float rope_theta = 10000.f;
  bool attention_bias = false;
  bool mlp_bias = false;

  bool has_projection() const { return arch == Arch::kOpt && word_embed_proj_dim != hidden_size; }
  int embed_dim() const { return arch == Arch::kOpt ? word_embed_proj_dim : hidden_size; }
  int kv_group_size() const { return num_heads / num_kv_heads; }
  bool qkv_bias() const { return arch == Arch::kOpt ? enable_bias : attention_bias; }
  bool out_bias() const { return qkv_bias(); }
  bool mlp_has_bias() const { return arch == Arch::kOpt ? enable_bias : mlp_bias; }
  int64_t ParameterCount() const;
};

// Parses and validates; errors name the offending key.
absl::StatusOr<ModelConfig> ParseModelConfig(const Json& json);
// Reads a config.json file (or a directory holding one); errors name the file.
absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& path);

}  // namespace chai

#endif  // CHAI_RUNTIME_MODEL_CONFIG_H_
