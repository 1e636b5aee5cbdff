#include "runtime/scheduler/scheduler.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "runtime/chai/features.h"

namespace chai {

double RequestOutput::tpot() const {
  if (token_times.size() < 2) return 0;
  return (token_times.back() - token_times.front()) / static_cast<double>(token_times.size() - 1);
}

struct Scheduler::Entry {
  explicit Entry(Request r) : req(std::move(r)), tokens(req.prompt), sampler(req.sampling) {}
  int64_t cached() const { return seq ? seq->length() : 0; }
  int64_t final_length() const { return static_cast<int64_t>(req.prompt.size()) + req.max_new_tokens; }

  Request req;
  std::vector<int32_t> tokens;  // prompt + generated: what the cache must hold before the next token
  std::vector<int32_t> output;
  std::unique_ptr<Sequence> seq;  // null while queued
  Sampler sampler;                // survives preemption, so sampled outputs continue exactly
  std::vector<double> token_times;
  double first_token_time = -1;
  int preemptions = 0;
  int64_t recomputed_outputs = 0;
};

Scheduler::Scheduler(Engine* engine, SchedulerOptions options, const Clock* clock)
    : engine_(engine), options_(std::move(options)), clock_(clock) {}

Scheduler::~Scheduler() = default;

int64_t Scheduler::EstimateBlocks(int64_t length, bool chai) const {
  const KvBlockPool& pool = engine_->kv_pool();
  const int layers = engine_->config().num_layers;
  const int kv = engine_->weights().local_kv_heads;
  const int64_t per_head = (length + pool.block_size() - 1) / pool.block_size();
  if (!chai || options_.chai_local_clusters.empty() || length < kChaiFeatureTokens) {
    return per_head * layers * kv * 2;
  }
  int64_t heads = 0;
  for (int l = 0; l < layers; ++l) {
    const int k = l < static_cast<int>(options_.chai_local_clusters.size()) ? options_.chai_local_clusters[l] : kv;
    heads += kv + std::min(k, kv);  // V of every KV head, K of the groups representatives read
  }
  return per_head * heads;
}

absl::Status Scheduler::Submit(Request request) {
  const ModelConfig& config = engine_->config();
  if (request.prompt.empty()) return absl::InvalidArgumentError(absl::StrCat("request ", request.id, ": empty prompt"));
  if (request.max_new_tokens < 0) {
    return absl::InvalidArgumentError(absl::StrCat("request ", request.id, ": max_new_tokens must be >= 0"));
  }
  if (auto s = request.sampling.Validate(); !s.ok()) return s;
  if (request.chai && options_.chai == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("request ", request.id, " asks for CHAI but the scheduler has no policy"));
  }
  for (int32_t t : request.prompt) {
    if (t < 0 || t >= config.vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("request ", request.id, ": token id ", t, " is outside the vocabulary of ", config.vocab_size));
    }
  }
  const int64_t final_length = static_cast<int64_t>(request.prompt.size()) + request.max_new_tokens;
  if (config.max_positions > 0 && final_length > config.max_positions) {
    return absl::InvalidArgumentError(absl::StrCat("request ", request.id, ": prompt + max_new_tokens = ", final_length,
                                                   " exceeds the model's ", config.max_positions, " positions"));
  }
  const int64_t need = std::max(EstimateBlocks(final_length, request.chai),
                                FirstChunkBlocks(static_cast<int64_t>(request.prompt.size()), request.chai));
  if (need > engine_->kv_pool().num_blocks()) {
    return absl::ResourceExhaustedError(absl::StrCat("request ", request.id, " needs ", need, " KV blocks, the pool has ",
                                                     engine_->kv_pool().num_blocks()));
  }
  auto same = [&](const std::unique_ptr<Entry>& e) { return e->req.id == request.id; };
  if (std::any_of(waiting_.begin(), waiting_.end(), same) || std::any_of(running_.begin(), running_.end(), same)) {
    return absl::AlreadyExistsError(absl::StrCat("request id ", request.id, " is already queued or running"));
  }
  waiting_.push_back(std::make_unique<Entry>(std::move(request)));
  return absl::OkStatus();
}

bool Scheduler::Cancel(int64_t id) {
  for (auto it = waiting_.begin(); it != waiting_.end(); ++it) {
    if ((*it)->req.id != id) continue;
    std::unique_ptr<Entry> e = std::move(*it);
    waiting_.erase(it);
    Finish(std::move(e), FinishReason::kCancelled);
    return true;
  }
  for (auto it = running_.begin(); it != running_.end(); ++it) {
    if ((*it)->req.id != id) continue;
    std::unique_ptr<Entry> e = std::move(*it);
    running_.erase(it);
    Finish(std::move(e), FinishReason::kCancelled);
    return true;
  }
  return false;
}

double Scheduler::NextArrival() const {
  double next = -1;
  const double now = clock_->Now();
  for (const auto& e : waiting_) {
    if (e->req.arrival_time > now && (next < 0 || e->req.arrival_time < next)) next = e->req.arrival_time;
  }
  return next;
}

std::vector<RequestOutput> Scheduler::TakeFinished() { return std::exchange(finished_, {}); }

int64_t Scheduler::Outstanding() const {
  int64_t total = 0;
  for (const auto& e : running_) {
    const int64_t target = options_.reserve_full_length ? e->final_length() : static_cast<int64_t>(e->tokens.size());
    total += std::max<int64_t>(0, EstimateBlocks(target, e->req.chai) - EstimateBlocks(e->cached(), e->req.chai));
  }
  return total;
}

int64_t Scheduler::FirstChunkBlocks(int64_t prompt_len, bool chai) const {
  if (!chai) return 0;
  // The first pass of a CHAI request stores K for every head before membership drops some.
  const int64_t first = prompt_len < kChaiFeatureTokens
                            ? prompt_len
                            : std::min<int64_t>(prompt_len, std::max(options_.max_prefill_tokens_per_step,
                                                                     kChaiFeatureTokens));
  return EstimateBlocks(first, false);
}

bool Scheduler::TryAdmit(Entry* e, int64_t* budget) {
  const int64_t target = options_.reserve_full_length ? e->final_length() : static_cast<int64_t>(e->tokens.size());
  const int64_t need = std::max(EstimateBlocks(target, e->req.chai),
                                FirstChunkBlocks(static_cast<int64_t>(e->tokens.size()), e->req.chai));
  // The oldest request always gets in when nothing runs (its need fits the pool: Submit checked).
  if (need > *budget && !running_.empty()) return false;
  auto seq = engine_->NewSequence();
  if (!seq.ok()) return false;  // every sequence row is taken
  e->seq = std::move(*seq);
  if (e->req.chai) options_.chai->Enable(e->seq.get());
  *budget -= need;
  return true;
}

int Scheduler::ChunkSize(const Entry& e, int64_t remaining, int prefill_budget) const {
  if (prefill_budget <= 0) return 0;
  const int64_t start = e.cached();
  int64_t n = std::min<int64_t>(remaining, prefill_budget);
  if (e.req.chai && start < kChaiFeatureTokens) {
    const int64_t p0 = static_cast<int64_t>(e.req.prompt.size());
    if (start > 0) {
      n = 1;  // a solo run decoded these positions one at a time, dense until the 5th token
    } else if (p0 < kChaiFeatureTokens) {
      n = p0;  // the whole short prompt in one (dense) pass
    } else {
      n = std::min<int64_t>(remaining, std::max<int64_t>(prefill_budget, kChaiFeatureTokens));
    }
  }
  return static_cast<int>(n);
}

void Scheduler::Preempt(size_t index) {
  std::unique_ptr<Entry> e = std::move(running_[index]);
  running_.erase(running_.begin() + static_cast<std::ptrdiff_t>(index));
  e->seq.reset();  // every block back to the pool; the re-prefill recomputes them
  ++e->preemptions;
  e->recomputed_outputs += static_cast<int64_t>(e->output.size());
  ++stats_.preemptions;
  waiting_.push_front(std::move(e));
}

void Scheduler::Finish(std::unique_ptr<Entry> e, FinishReason reason, absl::Status status) {
  e->seq.reset();
  RequestOutput out;
  out.id = e->req.id;
  out.prompt = std::move(e->req.prompt);
  out.output_ids = std::move(e->output);
  out.reason = reason;
  out.status = std::move(status);
  out.arrival_time = e->req.arrival_time;
  out.first_token_time = e->first_token_time;
  out.finish_time = clock_->Now();
  out.token_times = std::move(e->token_times);
  out.preemptions = e->preemptions;
  out.recomputed_outputs = e->recomputed_outputs;
  finished_.push_back(std::move(out));
}

absl::Status Scheduler::Step() {
  AdmitArrived();
  if (running_.empty()) return absl::OkStatus();
  Batch batch = PlanBatch();
  absl::StatusOr<bool> ran = ForwardPreempting(&batch);
  if (!ran.ok()) return ran.status();
  if (!*ran) return absl::OkStatus();  // preemption emptied the step, or ended its only request
  RecordStep();
  TakeTokens(batch);
  return absl::OkStatus();
}

// Admission: FIFO, requests that have arrived, while the estimated free blocks allow.
void Scheduler::AdmitArrived() {
  const double now = clock_->Now();
  int64_t budget = engine_->kv_pool().free_blocks() - Outstanding();
  while (!waiting_.empty() && waiting_.front()->req.arrival_time <= now) {
    if (waiting_.front()->req.max_new_tokens == 0) {
      std::unique_ptr<Entry> e = std::move(waiting_.front());
      waiting_.pop_front();
      Finish(std::move(e), FinishReason::kLength);
      continue;
    }
    if (options_.max_running > 0 && static_cast<int>(running_.size()) >= options_.max_running) break;
    if (!TryAdmit(waiting_.front().get(), &budget)) break;
    running_.push_back(std::move(waiting_.front()));
    waiting_.pop_front();
  }
}

// A decode token for every sequence whose cache lacks only its last token, and prefill chunks
// (oldest first) within the prompt-token budget.
Scheduler::Batch Scheduler::PlanBatch() const {
  Batch batch;
  int prefill_budget = std::max(1, options_.max_prefill_tokens_per_step);
  for (const auto& e : running_) {
    const int64_t cached = e->cached();
    const int64_t remaining = static_cast<int64_t>(e->tokens.size()) - cached;
    int64_t n = 1;
    if (remaining > 1) {
      n = ChunkSize(*e, remaining, prefill_budget);
      if (n == 0) continue;
      prefill_budget -= static_cast<int>(n);
    }
    batch.inputs.push_back(
        {e->seq.get(), std::vector<int32_t>(e->tokens.begin() + cached, e->tokens.begin() + cached + n)});
    batch.owners.push_back(e.get());
  }
  // A step of greedy requests only needs each one's argmax: the engine returns ids, not logits.
  batch.greedy_ids =
      std::all_of(batch.owners.begin(), batch.owners.end(), [](Entry* e) { return e->sampler.greedy(); });
  return batch;
}

// The engine pass; a full cache preempts the youngest running request (recompute later) and
// retries until the pass fits. False where no pass ran: the preemptions emptied the batch, or
// its only request can never fit (finished with the error).
absl::StatusOr<bool> Scheduler::ForwardPreempting(Batch* batch) {
  while (true) {
    absl::Status status;
    if (batch->greedy_ids) {
      auto r = engine_->ForwardGreedy(absl::MakeSpan(batch->inputs));
      if (r.ok()) batch->ids = std::move(*r);
      status = r.status();
    } else {
      auto r = engine_->Forward(absl::MakeSpan(batch->inputs), false);
      if (r.ok()) batch->logits = std::move(*r);
      status = r.status();
    }
    if (status.ok()) return true;
    if (!absl::IsResourceExhausted(status)) return status;
    if (running_.size() == 1) {  // alone and still too big: it can never run
      std::unique_ptr<Entry> e = std::move(running_[0]);
      running_.clear();
      Finish(std::move(e), FinishReason::kError, status);
      return false;
    }
    Entry* victim = running_.back().get();
    for (size_t j = 0; j < batch->owners.size(); ++j) {
      if (batch->owners[j] != victim) continue;
      batch->owners.erase(batch->owners.begin() + static_cast<std::ptrdiff_t>(j));
      batch->inputs.erase(batch->inputs.begin() + static_cast<std::ptrdiff_t>(j));
      break;
    }
    Preempt(running_.size() - 1);
    if (batch->inputs.empty()) return false;
  }
}

void Scheduler::RecordStep() {
  ++stats_.steps;
  const KvBlockPool& pool = engine_->kv_pool();
  const double used = 1.0 - static_cast<double>(pool.free_blocks()) / static_cast<double>(pool.num_blocks());
  stats_.kv_utilisation_sum += used;
  stats_.kv_utilisation_peak = std::max(stats_.kv_utilisation_peak, used);
}

// Samples where the pass reached the end of a sequence's tokens; finishes on a stop token or the
// length.
void Scheduler::TakeTokens(const Batch& batch) {
  const double t = clock_->Now();
  const int64_t vocab = engine_->config().vocab_size;
  std::vector<Entry*> done;
  std::vector<FinishReason> reasons;
  for (size_t j = 0; j < batch.owners.size(); ++j) {
    Entry* e = batch.owners[j];
    const int64_t fed = static_cast<int64_t>(batch.inputs[j].tokens.size());
    if (e->output.empty() || e->cached() < static_cast<int64_t>(e->tokens.size()) || fed > 1) {
      stats_.prefill_tokens += fed;
    } else {
      stats_.decode_tokens += fed;
    }
    if (e->cached() < static_cast<int64_t>(e->tokens.size())) continue;  // a chunk short of the end
    const int32_t token = batch.greedy_ids ? batch.ids[j]
                                           : e->sampler.Sample(absl::MakeConstSpan(
                                                 batch.logits.data<float>() + j * vocab, vocab));
    e->output.push_back(token);
    e->tokens.push_back(token);
    e->token_times.push_back(t);
    if (e->first_token_time < 0) e->first_token_time = t;
    const bool stop = std::find(e->req.stop_token_ids.begin(), e->req.stop_token_ids.end(), token) !=
                      e->req.stop_token_ids.end();
    if (stop || static_cast<int>(e->output.size()) >= e->req.max_new_tokens) {
      done.push_back(e);
      reasons.push_back(stop ? FinishReason::kStop : FinishReason::kLength);
    }
  }
  for (size_t d = 0; d < done.size(); ++d) {
    auto it = std::find_if(running_.begin(), running_.end(), [&](const auto& p) { return p.get() == done[d]; });
    std::unique_ptr<Entry> e = std::move(*it);
    running_.erase(it);
    Finish(std::move(e), reasons[d]);
  }
}

}  // namespace chai
