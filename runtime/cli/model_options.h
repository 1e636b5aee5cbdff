// Flags shared by every subcommand that runs a model, and the loading they drive.
#ifndef CHAI_RUNTIME_CLI_MODEL_OPTIONS_H_
#define CHAI_RUNTIME_CLI_MODEL_OPTIONS_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "parallel/bootstrap.h"
#include "parallel/communicator.h"
#include "parallel/head_placement.h"
#include "runtime/cli/flags.h"
#include "runtime/chai/chai_policy.h"
#include "runtime/chai/schedule.h"
#include "runtime/engine.h"

namespace chai {

struct ModelOptions {
  std::string model;  // checkpoint directory, or a config .json with --random-weights
  std::string device = "cpu";
  std::string dtype = "fp32";
  bool random_weights = false;
  int64_t seed = 0;
  std::string chai = "off";
  std::string chai_cluster = "agglomerative";
  std::string chai_rep = "lowest";
  std::string placement;  // head placement JSON (tensor parallelism); identity when empty
  int max_seq_len = 0;    // > 0: overrides max_position_embeddings (rotary models only)
  float kv_cache_gb = 0;  // 0: sized for the run (CPU) or 90% of free GPU memory after weights
  int kv_block_size = 32;  // positions per KV cache block (EngineOptions::block_size says why 32)
  int threads = 0;        // CPU threads per rank; 0: hardware threads / ranks on this host

  void Register(FlagParser* flags);
};

// Everything a subcommand needs to run the model on this rank.
struct LoadedModel {
  ProcessGroup group;
  ModelConfig config;
  HeadPlacement placement;
  std::string model_dir;  // where a tokenizer may be found ("" for a bare config)
  std::unique_ptr<Communicator> comm;
  std::unique_ptr<Engine> engine;
  std::unique_ptr<ChaiPolicy> chai;  // null with --chai off
  ChaiSchedule chai_schedule;
};

// The built-in default: a small published shape with random weights.
std::string DefaultModelConfig();

// `sequences` x `max_len` positions is what the run needs at once; it sizes the KV cache on
// the CPU when --kv-cache-gb is not given.
absl::StatusOr<LoadedModel> LoadModel(const ModelOptions& options, int64_t sequences = 1, int64_t max_len = 0);

// An error before the model loads when a request needs more positions than it has
// (max_position_embeddings from its config, or --max-seq-len): `what` names the request, e.g.
// "the prompt's 12 tokens + --max-new-tokens 32". OK otherwise, and where the config cannot be
// read (LoadModel then says why).
absl::Status CheckPositions(const ModelOptions& options, int64_t needed, const std::string& what);

}  // namespace chai

#endif  // CHAI_RUNTIME_CLI_MODEL_OPTIONS_H_
