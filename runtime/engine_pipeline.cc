// Engine, pipelined greedy decode: the host enqueues step N + 1 while the device runs step N.
//
// A synchronous step leaves the device idle between steps while the host waits for the ids, takes
// the tokens, prepares the next step's metadata and KV reservations, uploads them (a copy that waits
// for the device) and launches the graph: tens of microseconds a step, a few percent of a
// batch-1 step at TP = 4. Here that host work overlaps the device's step instead: the next step's
// metadata goes through page-locked staging without waiting (HostUpload), its input tokens are the
// previous step's argmax copied on the device, and its graph is queued behind the running one.
//
// Buffers by parity (launch number mod 2): each slot's metadata staging and argmax output, and
// the engine's host copy of the ids. A half is reused two launches later, by which time the step
// that used it has been collected (the caller holds at most two in flight and collects them in
// order), so every copy from or into it has run.
#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "kernels/ops.h"
#include "kernels/step_graph.h"
#include "runtime/engine.h"
#include "runtime/engine_internal.h"

namespace chai {

bool Engine::PipelinesGreedy(absl::Span<StepInput> steps) const {
  if (!pipeline_greedy_) return false;
  if (!pipeline_every_step_) return CanReplay(steps, false);
  for (const StepInput& s : steps) {
    if (s.tokens.size() != 1 || (policy_ != nullptr && policy_->Active(*s.seq))) return false;
  }
  return true;
}

absl::StatusOr<Engine::PendingGreedy> Engine::EnqueueGreedy(absl::Span<StepInput> steps, PendingGreedy* feed) {
  const size_t n = steps.size();
  if (feed != nullptr) {
    ++times_.fed;
    const size_t given = feed->collected ? feed->ids.size() : static_cast<size_t>(feed->device_ids.numel());
    if (given != n) {
      return absl::InvalidArgumentError(
          absl::StrCat("EnqueueGreedy: the feeding step has ", given, " ids for ", n, " sequences"));
    }
    if (feed->collected) {  // its ids are on the host already: they are this step's tokens
      for (size_t i = 0; i < n; ++i) steps[i].tokens = {feed->ids[i]};
      feed = nullptr;
    }
  }
  for (const StepInput& s : steps) {
    if (s.tokens.size() != 1) return absl::InvalidArgumentError("EnqueueGreedy: one token per sequence");
  }
  double t = StepClock();
  if (CanReplay(steps, false)) {
    auto meta = PrepareStep(steps, config_, pool_.get());
    if (!meta.ok()) return meta.status();
    GraphSlot* slot = SlotFor(*meta);
    if (slot->graph != nullptr) return EnqueueReplay(*meta, steps, slot, feed, t);
    // A shape's first steps run eagerly or record the graph (ReplayDecode), synchronously below;
    // the reservations just made stand (preparing again takes nothing more).
    Lap(&t, &times_.prepare);
  }
  if (feed != nullptr) {
    const std::vector<int32_t>& ids = CollectGreedy(feed);
    for (size_t i = 0; i < n; ++i) steps[i].tokens = {ids[i]};
  }
  auto ids = ForwardGreedy(steps);
  if (!ids.ok()) return ids.status();
  PendingGreedy done;
  done.ids = std::move(*ids);
  done.collected = true;
  return done;
}

Engine::PendingGreedy Engine::EnqueueReplay(const StepMetadata& meta, absl::Span<StepInput> steps, GraphSlot* slot,
                                            const PendingGreedy* feed, double t) {
  const int parity = static_cast<int>(greedy_launches_ & 1);
  HostReadback& readback = greedy_readback_[parity];
  // A step two launches back that was never collected (its caller stopped early): its ids are
  // given up, after its copy has landed, so that nothing writes the half while it is reused.
  if (greedy_owner_[parity] >= 0) readback.Wait();
  Upload(meta, steps, &slot->step, &slot->staging, parity);
  if (feed != nullptr) CopyTensor(feed->device_ids, &slot->step.ids);  // device to device, in stream order
  Lap(&t, &times_.prepare);
  slot->graph->Replay();
  Tensor& ids = slot->greedy_ids[parity];
  if (!ids.defined()) ids = Tensor::Empty({meta.num_seqs}, DType::kI32, device_);
  ops::ArgmaxRows(slot->logits, config_.vocab_size, &ids);
  readback.Reserve(ids.nbytes(), device_);
  readback.CopyAsync(ids, 0);
  PendingGreedy pending;
  pending.parity = parity;
  pending.launch = greedy_launches_++;
  pending.device_ids = ids;
  greedy_owner_[parity] = pending.launch;
  Lap(&t, &times_.launch);
  FinishStep(steps, false);  // host bookkeeping only: a replayable step has no policy work
  Lap(&t, &times_.finish);
  ++times_.steps;
  ++times_.queued;
  return pending;
}

const std::vector<int32_t>& Engine::CollectGreedy(PendingGreedy* pending) {
  if (pending->collected) return pending->ids;
  if (pending->parity < 0 || greedy_owner_[pending->parity] != pending->launch) {
    std::fprintf(stderr, "chai: internal error: a pipelined greedy step collected after its buffers were reused\n");
    std::abort();
  }
  double t = StepClock();
  HostReadback& readback = greedy_readback_[pending->parity];
  readback.Wait();
  const int32_t* ids = static_cast<const int32_t*>(readback.data());
  pending->ids.assign(ids, ids + pending->device_ids.numel());
  pending->collected = true;
  greedy_owner_[pending->parity] = -1;
  Lap(&t, &times_.logits);
  return pending->ids;
}

}  // namespace chai
