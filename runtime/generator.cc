#include "runtime/generator.h"

#include <chrono>
#include <optional>

#include "absl/status/status.h"

namespace chai {
namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

absl::Status CheckInputs(const std::vector<std::vector<int32_t>>& prompts, const GenerateOptions& options) {
  if (prompts.empty()) return absl::InvalidArgumentError("no prompts");
  for (const auto& p : prompts)
    if (p.empty()) return absl::InvalidArgumentError("empty prompt: give at least one token");
  if (options.max_new_tokens < 0) return absl::InvalidArgumentError("--max-new-tokens must be >= 0");
  return options.sampling.Validate();
}

// One generation's state between the engine's passes: a sampler and a sequence per prompt, the
// token each sequence feeds next, and which are done.
class Generation {
 public:
  Generation(Engine& engine, const std::vector<std::vector<int32_t>>& prompts, const GenerateOptions& options,
             const std::function<void(int, int32_t)>& on_token)
      : engine_(engine),
        prompts_(prompts),
        options_(options),
        on_token_(on_token),
        vocab_(engine.config().vocab_size),
        // Greedy decoding needs only each sequence's argmax: the engine returns ids, not logits.
        greedy_ids_(options.sampling.greedy && !options.keep_prompt_logits),
        done_(prompts.size(), options.max_new_tokens == 0),
        next_(prompts.size()) {
    result_.output_ids.resize(prompts.size());
  }

  // A sampler (its own reproducible stream: seed + index) and a sequence per prompt.
  absl::Status Start() {
    for (size_t i = 0; i < prompts_.size(); ++i) {
      SamplingParams sp = options_.sampling;
      sp.seed += i;
      samplers_.emplace_back(sp);
      auto seq = engine_.NewSequence();
      if (!seq.ok()) return seq.status();
      result_.sequences.push_back(std::move(*seq));
      if (options_.chai != nullptr) options_.chai->Enable(result_.sequences.back().get());
    }
    return absl::OkStatus();
  }

  // All prompts in one forward pass; chooses each sequence's first new token.
  absl::Status Prefill() {
    const double t0 = Now();
    std::vector<StepInput> steps;
    for (size_t i = 0; i < prompts_.size(); ++i) steps.push_back({result_.sequences[i].get(), prompts_[i]});
    if (greedy_ids_) {
      auto ids = engine_.ForwardGreedy(absl::MakeSpan(steps));
      if (!ids.ok()) return ids.status();
      next_ = *ids;
    } else {
      auto logits = engine_.Forward(absl::MakeSpan(steps), options_.keep_prompt_logits);
      if (!logits.ok()) return logits.status();
      SamplePrefill(*logits);
    }
    result_.prefill_seconds = Now() - t0;
    return absl::OkStatus();
  }

  // Each live sequence feeds back its last token until every one is done.
  absl::Status Decode() {
    const StepTimes before = engine_.step_times();
    const double t0 = Now();
    if (auto s = greedy_ids_ && options_.pipeline_decode ? DecodePipelined() : DecodeInTurn(); !s.ok()) return s;
    result_.decode_seconds = Now() - t0;
    const StepTimes& after = engine_.step_times();
    result_.decode_times = {after.prepare - before.prepare, after.launch - before.launch,
                            after.logits - before.logits,   after.finish - before.finish,
                            after.steps - before.steps,     after.fed - before.fed,
                            after.queued - before.queued};
    return absl::OkStatus();
  }

  GenerateResult TakeResult() { return std::move(result_); }

 private:
  // The prefill's logits: every prompt row when they are kept (the next token from each prompt's
  // last row), else one row per sequence.
  void SamplePrefill(const Tensor& logits) {
    int64_t row = 0;
    for (size_t i = 0; i < prompts_.size(); ++i) {
      int64_t last = static_cast<int64_t>(i);
      if (options_.keep_prompt_logits) {
        const int64_t n = static_cast<int64_t>(prompts_[i].size());
        result_.prompt_logits.push_back(logits.Rows(row, row + n).Clone());
        row += n;
        last = row - 1;
      }
      next_[i] = samplers_[i].Sample(absl::MakeConstSpan(logits.data<float>() + last * vocab_, vocab_));
    }
  }

  // Appends each live sequence's chosen token to its output (and streams it); those that reach
  // their length or EOS are done, the others go into `live` (their positions in `index`).
  void TakeNextTokens(std::vector<StepInput>* live, std::vector<size_t>* index) {
    for (size_t i = 0; i < prompts_.size(); ++i) {
      if (done_[i]) continue;
      result_.output_ids[i].push_back(next_[i]);
      if (on_token_) on_token_(static_cast<int>(i), next_[i]);
      if (static_cast<int>(result_.output_ids[i].size()) >= options_.max_new_tokens ||
          next_[i] == options_.eos_token_id) {
        done_[i] = true;
        continue;
      }
      live->push_back({result_.sequences[i].get(), {next_[i]}});
      index->push_back(i);
    }
  }

  // One step after another: each waits for the previous step's tokens.
  absl::Status DecodeInTurn() {
    while (true) {
      std::vector<StepInput> live;
      std::vector<size_t> index;
      TakeNextTokens(&live, &index);
      if (live.empty()) return absl::OkStatus();
      if (auto s = DecodeStep(live, index); !s.ok()) return s;
    }
  }

  absl::Status DecodeStep(std::vector<StepInput>& live, const std::vector<size_t>& index) {
    if (greedy_ids_) {
      auto ids = engine_.ForwardGreedy(absl::MakeSpan(live));
      if (!ids.ok()) return ids.status();
      ++result_.decode_steps;
      for (size_t j = 0; j < live.size(); ++j) next_[index[j]] = (*ids)[j];
      return absl::OkStatus();
    }
    auto logits = engine_.Forward(absl::MakeSpan(live), false);
    if (!logits.ok()) return logits.status();
    ++result_.decode_steps;
    const double sample_start = Now();
    for (size_t j = 0; j < live.size(); ++j) {
      next_[index[j]] = samplers_[index[j]].Sample(absl::MakeConstSpan(logits->data<float>() + j * vocab_, vocab_));
    }
    result_.decode_sampling_seconds += Now() - sample_start;
    return absl::OkStatus();
  }

  // A greedy step enqueued on the engine (Engine::EnqueueGreedy): its sequences (their positions
  // in the generation) and its ids once collected.
  struct InFlight {
    std::vector<StepInput> live;
    std::vector<size_t> index;
    Engine::PendingGreedy pending;
  };

  // Greedy decoding with the host one step ahead: while the device runs a step, the next one is
  // enqueued over the same sequences, fed that step's tokens on the device. It is enqueued only
  // when no sequence reaches its length with that token (the batch then ends together); a sequence
  // that stops at EOS instead had one step too many, whose token is dropped and whose cache is
  // rolled back by its one position. Steps the engine cannot pipeline go in turn.
  absl::Status DecodePipelined() {
    std::optional<InFlight> current;
    while (true) {
      if (!current) {
        InFlight step;
        TakeNextTokens(&step.live, &step.index);
        if (step.live.empty()) return absl::OkStatus();
        auto pending = engine_.EnqueueGreedy(absl::MakeSpan(step.live), nullptr);
        if (!pending.ok()) return pending.status();
        step.pending = std::move(*pending);
        current = std::move(step);
      }
      std::optional<InFlight> next = EnqueueFedBy(&*current);
      const std::vector<int32_t>& ids = engine_.CollectGreedy(&current->pending);
      ++result_.decode_steps;
      for (size_t j = 0; j < ids.size(); ++j) next_[current->index[j]] = ids[j];
      if (!next) {
        current.reset();
        continue;
      }
      std::vector<StepInput> live;
      std::vector<size_t> index;
      TakeNextTokens(&live, &index);
      if (index == next->index) {  // every sequence went on: the step enqueued ahead was right
        current = std::move(next);
        continue;
      }
      const std::vector<int32_t>& more = engine_.CollectGreedy(&next->pending);
      ++result_.decode_steps;
      for (size_t j = 0; j < more.size(); ++j) {
        const size_t i = next->index[j];
        if (done_[i]) {
          next->live[j].seq->kv.Advance(-1);  // stopped at EOS: this step's position is not its own
        } else {
          next_[i] = more[j];
        }
      }
      current.reset();
    }
  }

  // The step after `step`, enqueued now and fed its tokens on the device; nullopt where a sequence
  // reaches its length with them or the engine cannot pipeline the step (Engine::PipelinesGreedy). A step that
  // fails to enqueue (a full KV cache) is left to the next step in turn, which reports it if it
  // still fails with the real tokens.
  std::optional<InFlight> EnqueueFedBy(InFlight* step) {
    for (size_t i : step->index) {
      if (static_cast<int>(result_.output_ids[i].size()) + 1 >= options_.max_new_tokens) return std::nullopt;
    }
    InFlight next{step->live, step->index, {}};  // the current tokens stand in until the device feeds them
    if (!engine_.PipelinesGreedy(absl::MakeSpan(next.live))) return std::nullopt;
    auto pending = engine_.EnqueueGreedy(absl::MakeSpan(next.live), &step->pending);
    if (!pending.ok()) return std::nullopt;
    next.pending = std::move(*pending);
    return next;
  }

  Engine& engine_;
  const std::vector<std::vector<int32_t>>& prompts_;
  const GenerateOptions& options_;
  const std::function<void(int, int32_t)>& on_token_;
  const int64_t vocab_;
  const bool greedy_ids_;
  std::vector<Sampler> samplers_;
  std::vector<bool> done_;
  std::vector<int32_t> next_;
  GenerateResult result_;
};

}  // namespace

absl::StatusOr<GenerateResult> Generate(Engine& engine, const std::vector<std::vector<int32_t>>& prompts,
                                        const GenerateOptions& options,
                                        const std::function<void(int, int32_t)>& on_token) {
  if (auto s = CheckInputs(prompts, options); !s.ok()) return s;
  Generation generation(engine, prompts, options, on_token);
  if (auto s = generation.Start(); !s.ok()) return s;
  if (auto s = generation.Prefill(); !s.ok()) return s;
  if (auto s = generation.Decode(); !s.ok()) return s;
  return generation.TakeResult();
}

}  // namespace chai
