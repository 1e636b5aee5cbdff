// Text generation on top of the engine: prefill a batch of prompts, then decode one token per
// sequence per step until each has its new tokens (or stops at EOS).
#ifndef CHAI_RUNTIME_GENERATOR_H_
#define CHAI_RUNTIME_GENERATOR_H_

#include <functional>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/chai/chai_policy.h"
#include "runtime/engine.h"
#include "runtime/sampler.h"

namespace chai {

struct GenerateOptions {
  int max_new_tokens = 16;
  SamplingParams sampling;
  int eos_token_id = -1;         // < 0: never stop early
  bool keep_prompt_logits = false;
  // CHAI for every sequence when set (the engine must use this policy); dense otherwise.
  const ChaiPolicy* chai = nullptr;
  // Greedy decoding enqueues each step before the previous one's tokens reach the host, where the
  // engine can (Engine::PipelinesGreedy): the same tokens, without the device waiting for the host
  // between steps. false: every step in turn (tests compare the two).
  bool pipeline_decode = true;
};

struct GenerateResult {
  std::vector<std::vector<int32_t>> output_ids;  // new tokens per sequence
  std::vector<Tensor> prompt_logits;             // [prompt len, vocab] per sequence, if kept
  std::vector<std::unique_ptr<Sequence>> sequences;  // final state (caches, CHAI membership)
  double prefill_seconds = 0;
  double decode_seconds = 0;
  int64_t decode_steps = 0;  // engine steps run (a pipelined step a sequence stopped before counts)
  StepTimes decode_times;          // the engine's host-side breakdown of the decode steps
  double decode_sampling_seconds = 0;  // choosing the next tokens from the logits
};

// on_token(sequence index, token) is called as each token is chosen (for streaming output).
absl::StatusOr<GenerateResult> Generate(Engine& engine, const std::vector<std::vector<int32_t>>& prompts,
                                        const GenerateOptions& options,
                                        const std::function<void(int, int32_t)>& on_token = nullptr);

}  // namespace chai

#endif  // CHAI_RUNTIME_GENERATOR_H_
