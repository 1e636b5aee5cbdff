// In-flight (continuous) batching over one Engine.
//
// Requests wait in a FIFO queue until their arrival time has passed and the KV pool can take
// them; every Step() then runs ONE engine forward pass that holds
//   - one decode token for every running sequence that has finished its prompt, and
//   - prefill chunks of admitted prompts, at most `max_prefill_tokens_per_step` prompt tokens in
//     all, so that long prompts never stall the running decodes.
// A chunk is simply a StepInput with several tokens for a sequence whose earlier chunks are
// cached. When the engine reports the KV cache full, the youngest running request is preempted
// by recompute: its Sequence (and every block it held) is destroyed and it goes back to the
// front of the queue with its generated tokens appended to its prompt, so that when it is
// admitted again the re-prefill rebuilds exactly the cache it had and its output continues
// where it stopped (its sampler keeps its state).
//
// CHAI requests: membership is fixed in the pass in which a sequence first holds >= 5 tokens,
// and positions computed before that pass stay dense. A request's output is the solo output
// only if its passes cross that boundary the way a solo run does (the whole prompt in one
// pass, then one token per pass), so below position 5 a CHAI request's chunks follow that
// plan (the first chunk is the whole original prompt when it is shorter than 5, and at least
// 5 tokens otherwise, even above the prefill budget); past position 5 it chunks freely.
//
// KV estimate used for admission: blocks for prompt + max_new_tokens positions on every
// (layer, side, KV head); for a CHAI request with `chai_local_clusters` given, the K side of a
// layer with k clusters counts min(k, KV heads) heads (the most the representatives can read).
// The first pass of a CHAI request holds dense K for its chunk until membership is fixed, so the
// need is at least the dense blocks of that chunk. An estimate only: a Forward that still does
// not fit preempts.
#ifndef CHAI_RUNTIME_SCHEDULER_SCHEDULER_H_
#define CHAI_RUNTIME_SCHEDULER_SCHEDULER_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "runtime/chai/chai_policy.h"
#include "runtime/engine.h"
#include "runtime/sampler.h"
#include "runtime/scheduler/clock.h"

namespace chai {

struct Request {
  int64_t id = 0;  // unique among the requests the scheduler holds
  std::vector<int32_t> prompt;
  int max_new_tokens = 16;
  SamplingParams sampling;
  std::vector<int32_t> stop_token_ids;  // generation ends after emitting one of these (it is kept)
  bool chai = false;                    // needs SchedulerOptions::chai
  double arrival_time = 0;              // clock seconds; not admitted before
};

enum class FinishReason { kLength, kStop, kCancelled, kError };

struct RequestOutput {
  int64_t id = 0;
  std::vector<int32_t> prompt;
  std::vector<int32_t> output_ids;  // new tokens (with the stop token, if one ended it)
  FinishReason reason = FinishReason::kLength;
  absl::Status status;  // why, for kError (e.g. the request alone exceeds the KV pool)
  double arrival_time = 0;
  double first_token_time = -1;    // -1: no token
  double finish_time = 0;
  std::vector<double> token_times;  // clock time each output token was chosen
  int preemptions = 0;
  int64_t recomputed_outputs = 0;  // generated tokens re-prefilled after preemptions

  double ttft() const { return first_token_time < 0 ? -1 : first_token_time - arrival_time; }
  // Mean time between output tokens after the first; 0 with fewer than 2 tokens.
  double tpot() const;
};

struct SchedulerOptions {
  int max_prefill_tokens_per_step = 256;  // prompt tokens per step over all prefilling requests
  int max_running = 0;                    // 0: as many as the engine's sequence rows allow
  // Admission: true reserves each admitted request's whole estimated need (prompt +
  // max_new_tokens), so preemption is rare; false admits whenever the prompt alone fits (more
  // requests in flight, preemption when they grow).
  bool reserve_full_length = true;
  const ChaiPolicy* chai = nullptr;      // the engine's policy, for Request::chai
  std::vector<int> chai_local_clusters;  // per layer, for the CHAI-aware estimate; empty: dense
};

struct SchedulerStats {
  int64_t steps = 0;
  int64_t preemptions = 0;
  int64_t prefill_tokens = 0;  // recomputed tokens of preempted requests included
  int64_t decode_tokens = 0;
  double kv_utilisation_sum = 0;  // used / total blocks after each step, summed
  double kv_utilisation_peak = 0;
  double mean_kv_utilisation() const { return steps == 0 ? 0 : kv_utilisation_sum / steps; }
};

class Scheduler {
 public:
  // `engine` must have `options.chai` installed as its attention policy when CHAI requests come.
  Scheduler(Engine* engine, SchedulerOptions options, const Clock* clock);
  ~Scheduler();

  // Queues a request (bad requests: an error, nothing queued).
  absl::Status Submit(Request request);
  // Ends a queued or running request now (reported with FinishReason::kCancelled and the
  // tokens it had); false when no such request is held.
  bool Cancel(int64_t id);

  // One engine step (admission, chunked prefill, decodes, preemption). Does nothing when no
  // request has arrived yet. Errors are the engine's, other than a full cache.
  absl::Status Step();

  bool HasWork() const { return !waiting_.empty() || !running_.empty(); }
  size_t num_waiting() const { return waiting_.size(); }
  size_t num_running() const { return running_.size(); }
  // Earliest arrival time among queued requests that have not arrived; -1 when none.
  double NextArrival() const;
  std::vector<RequestOutput> TakeFinished();
  const SchedulerStats& stats() const { return stats_; }

  // KV blocks the estimate gives a request of `length` positions (see the header comment).
  int64_t EstimateBlocks(int64_t length, bool chai) const;
  // Dense blocks the first pass of a CHAI request of `prompt_len` tokens holds before its
  // non-representative K is dropped (0 for dense requests); admission takes the larger of this
  // and the estimate.
  int64_t FirstChunkBlocks(int64_t prompt_len, bool chai) const;

 private:
  struct Entry;
  // One engine pass: its inputs and the running entries they belong to (same order), and what it
  // returned: each input's argmax where every request is greedy, else the logits to sample from.
  struct Batch {
    std::vector<StepInput> inputs;
    std::vector<Entry*> owners;
    bool greedy_ids = false;
    std::vector<int32_t> ids;
    Tensor logits;
  };
  // Step's parts, in order.
  void AdmitArrived();
  Batch PlanBatch() const;
  absl::StatusOr<bool> ForwardPreempting(Batch* batch);
  void RecordStep();
  void TakeTokens(const Batch& batch);
  bool TryAdmit(Entry* e, int64_t* budget);
  int ChunkSize(const Entry& e, int64_t remaining, int prefill_budget) const;
  void Preempt(size_t running_index);
  void Finish(std::unique_ptr<Entry> e, FinishReason reason, absl::Status status = absl::OkStatus());
  int64_t Outstanding() const;  // estimated blocks the running requests will still take

  Engine* engine_;
  SchedulerOptions options_;
  const Clock* clock_;
  std::deque<std::unique_ptr<Entry>> waiting_;
  std::vector<std::unique_ptr<Entry>> running_;  // in admission order (oldest first)
  std::vector<RequestOutput> finished_;
  SchedulerStats stats_;
  int64_t admissions_ = 0;
};

}  // namespace chai

#endif  // CHAI_RUNTIME_SCHEDULER_SCHEDULER_H_
