#include "runtime/generator.h"

#include <chrono>

#include "absl/status/status.h"

namespace chai {
namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

absl::StatusOr<GenerateResult> Generate(Engine& engine, const std::vector<std::vector<int32_t>>& prompts,
                                        const GenerateOptions& options,
                                        const std::function<void(int, int32_t)>& on_token) {
  if (prompts.empty()) return absl::InvalidArgumentError("no prompts");
  for (const auto& p : prompts)
    if (p.empty()) return absl::InvalidArgumentError("empty prompt: give at least one token");
  if (options.max_new_tokens < 0) return absl::InvalidArgumentError("--max-new-tokens must be >= 0");
  if (auto s = options.sampling.Validate(); !s.ok()) return s;

  const int64_t vocab = engine.config().vocab_size;
  GenerateResult result;
  result.output_ids.resize(prompts.size());
  std::vector<Sampler> samplers;
  std::vector<StepInput> steps;
  for (size_t i = 0; i < prompts.size(); ++i) {
    SamplingParams sp = options.sampling;
    sp.seed += i;  // independent streams per sequence, reproducible
    samplers.emplace_back(sp);
    auto seq = engine.NewSequence();
    if (!seq.ok()) return seq.status();
    result.sequences.push_back(std::move(*seq));
    if (options.chai != nullptr) options.chai->Enable(result.sequences.back().get());
    steps.push_back({result.sequences.back().get(), prompts[i]});
  }

  // Greedy decoding needs only each sequence's argmax: the engine returns ids, not logits.
  const bool greedy_ids = options.sampling.greedy && !options.keep_prompt_logits;

  // Prefill: all prompts in one forward pass.
  double t0 = Now();
  std::vector<bool> done(prompts.size(), options.max_new_tokens == 0);
  std::vector<int32_t> next(prompts.size());
  absl::StatusOr<Tensor> logits;
  if (greedy_ids) {
    auto ids = engine.ForwardGreedy(absl::MakeSpan(steps));
    if (!ids.ok()) return ids.status();
    next = *ids;
  } else {
    logits = engine.Forward(absl::MakeSpan(steps), options.keep_prompt_logits);
    if (!logits.ok()) return logits.status();
  }
  int64_t row = 0;
  for (size_t i = 0; i < prompts.size() && !greedy_ids; ++i) {
    const int64_t n = static_cast<int64_t>(prompts[i].size());
    if (options.keep_prompt_logits) {
      result.prompt_logits.push_back(logits->Rows(row, row + n).Clone());
      row += n;
      next[i] = samplers[i].Sample(absl::MakeConstSpan(logits->data<float>() + (row - 1) * vocab, vocab));
    } else {
      next[i] = samplers[i].Sample(absl::MakeConstSpan(logits->data<float>() + i * vocab, vocab));
    }
  }
  result.prefill_seconds = Now() - t0;

  // Decode: each live sequence feeds back its last token.
  const StepTimes before = engine.step_times();
  t0 = Now();
  while (true) {
    std::vector<StepInput> live;
    std::vector<size_t> index;
    for (size_t i = 0; i < prompts.size(); ++i) {
      if (done[i]) continue;
      result.output_ids[i].push_back(next[i]);
      if (on_token) on_token(static_cast<int>(i), next[i]);
      if (static_cast<int>(result.output_ids[i].size()) >= options.max_new_tokens ||
          next[i] == options.eos_token_id) {
        done[i] = true;
        continue;
      }
      live.push_back({result.sequences[i].get(), {next[i]}});
      index.push_back(i);
    }
    if (live.empty()) break;
    if (greedy_ids) {
      auto ids = engine.ForwardGreedy(absl::MakeSpan(live));
      if (!ids.ok()) return ids.status();
      ++result.decode_steps;
      for (size_t j = 0; j < live.size(); ++j) next[index[j]] = (*ids)[j];
      continue;
    }
    auto step_logits = engine.Forward(absl::MakeSpan(live), false);
    if (!step_logits.ok()) return step_logits.status();
    ++result.decode_steps;
    const double sample_start = Now();
    for (size_t j = 0; j < live.size(); ++j) {
      next[index[j]] =
          samplers[index[j]].Sample(absl::MakeConstSpan(step_logits->data<float>() + j * vocab, vocab));
    }
    result.decode_sampling_seconds += Now() - sample_start;
  }
  result.decode_seconds = Now() - t0;
  const StepTimes& after = engine.step_times();
  result.decode_times = {after.prepare - before.prepare, after.launch - before.launch, after.logits - before.logits,
                         after.finish - before.finish, after.steps - before.steps};
  return result;
}

}  // namespace chai
