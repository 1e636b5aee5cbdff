// Engine, one step: the step's metadata uploaded, the forward pass run eagerly or replayed from a
// recorded decode graph, the sequences advanced, and the logits or greedy ids brought back.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "absl/status/status.h"
#include "kernels/ops.h"
#include "kernels/step_graph.h"
#include "runtime/engine.h"
#include "runtime/engine_internal.h"
#include "runtime/graph_buckets.h"

namespace chai {

Tensor Engine::HostLogits(const Tensor& logits) const {
  const int64_t rows = logits.dim(0), vocab = config_.vocab_size;
  Tensor host = logits.Cast(DType::kF32);
  if (host.device() != Device::kCpu) host = host.To(Device::kCpu);
  if (host.dim(1) == vocab) return host;
  Tensor trimmed = Tensor::Empty({rows, vocab}, DType::kF32);  // drop the vocabulary padding
  for (int64_t r = 0; r < rows; ++r) {
    std::memcpy(trimmed.data<float>() + r * vocab, host.data<float>() + r * host.dim(1), vocab * sizeof(float));
  }
  return trimmed;
}

// Greedy ids where the logits are: on a GPU only [rows] int32 ids come back, not [rows, vocab]
// fp32 logits (4 MB at batch 32 over 32000 tokens: 4.2 ms of a 15.1 ms step on an H100,
// benchmarks/results/llama-7b-tp1-h100.md). ops::ArgmaxRows follows the host Argmax's rule.
Tensor Engine::GreedyIds(const Tensor& logits) const {
  Tensor ids = Tensor::Empty({logits.dim(0)}, DType::kI32, logits.device());
  ops::ArgmaxRows(logits, config_.vocab_size, &ids);
  return ids.device() == Device::kCpu ? ids : ids.To(Device::kCpu);
}

void Engine::Upload(const StepMetadata& meta, absl::Span<StepInput> steps, DeviceStep* step, HostUpload* staging,
                    int parity) {
  // Blocks taken by this step's reservations; a pipelined step's without waiting for the device.
  if (staging != nullptr) {
    tables_->FlushAsync(parity);
  } else {
    tables_->Flush();
  }
  // One copy for the step's int32 arrays (packed_upload.h); a step that already has its buffer
  // (a graph slot's: a recorded graph reads fixed addresses) is refilled in place.
  const Tensor* hosts[] = {&meta.ids,     &meta.positions, &meta.pos_rows, &meta.last_rows,
                           &meta.q_start, &meta.seq_lens,  &meta.slots,    &meta.token_rows};
  Tensor* outs[] = {&step->ids,           &step->positions,      &step->pos_rows,   &step->last_rows,
                    &step->batch.q_start, &step->batch.seq_lens, &step->batch.slots, &step->batch.token_rows};
  if (absl::Status sent = step->upload.Send(hosts, device_, outs, staging, parity); !sent.ok()) {
    std::fprintf(stderr, "chai: internal error: %s\n", std::string(sent.message()).c_str());
    std::abort();
  }
  step->batch.num_seqs = meta.num_seqs;
  step->batch.max_new_tokens = meta.max_new;
  step->past = meta.past;
  step->policy_active = false;
  for (const StepInput& s : steps) step->policy_active |= policy_ != nullptr && policy_->Active(*s.seq);
}

bool Engine::CanReplay(absl::Span<StepInput> steps, bool all_positions) const {
  if (!capture_decode_ || all_positions) return false;
  for (const StepInput& s : steps) {
    if (s.tokens.size() != 1) return false;
    if (policy_ != nullptr && policy_->Active(*s.seq)) return false;  // CHAI fixing membership: host work
  }
  return true;
}

Engine::GraphSlot* Engine::SlotFor(const StepMetadata& meta) {
  // The attention kernels plan their chunks from the bound the graph records: one graph per
  // length bucket keeps that bound within 1.5x of the real lengths (graph_buckets.h).
  const int64_t capacity = int64_t{tables_->cap_blocks()} * pool_->block_size();
  const int64_t bound = DecodeLengthBucket(meta.max_len, capacity);
  auto& slot = graphs_[{policy_, meta.num_seqs, bound}];
  if (slot == nullptr) {
    slot = std::make_unique<GraphSlot>();
    slot->logits = NewActivation(meta.num_seqs, weights_.vocab_shard * comm_->size());
    slot->step.batch.max_seq_len = static_cast<int>(bound);
  }
  return slot.get();
}

absl::StatusOr<Tensor> Engine::ReplayDecode(absl::Span<StepInput> steps, StepOutput output) {
  double t = StepClock();
  auto meta = PrepareStep(steps, config_, pool_.get());
  if (!meta.ok()) return meta.status();
  GraphSlot* slot = SlotFor(*meta);
  Upload(*meta, steps, &slot->step);
  Lap(&t, &times_.prepare);
  if (!slot->warmed) {  // the first step of a shape runs eagerly (allocations, plans, scratch)
    RunModel(steps, slot->step, false, &slot->logits);
    slot->warmed = true;
  } else {
    if (slot->graph == nullptr) {
      auto graph = StepGraph::Record(device_, [&] { RunModel(steps, slot->step, false, &slot->logits); });
      if (!graph.ok()) return graph.status();
      slot->graph = std::move(*graph);
    }
    slot->graph->Replay();
  }
  Lap(&t, &times_.launch);
  Tensor host = HostOutput(slot->logits, output);
  Lap(&t, &times_.logits);
  FinishStep(steps, false);
  Lap(&t, &times_.finish);
  ++times_.steps;
  return host;
}

void Engine::FinishStep(absl::Span<StepInput> steps, bool policy_active) {
  for (StepInput& s : steps) {
    s.seq->kv.Advance(static_cast<int64_t>(s.tokens.size()));
    if (policy_ == nullptr) continue;
    policy_->AfterStep(s.seq);
    if (!policy_active) continue;
    // Maps the policy fixed on the device (or here) reach the tables' host mirror, so that later
    // differences, e.g. a reused row's identity maps, are sent.
    for (int l = 0; l < config_.num_layers; ++l) tables_->SetScoreHeads(s.seq->kv.row(), l, s.seq->score_head[l]);
  }
}

absl::StatusOr<Tensor> Engine::Forward(absl::Span<StepInput> steps, bool all_positions) {
  return Step(steps, all_positions, StepOutput::kLogits);
}

absl::StatusOr<std::vector<int32_t>> Engine::ForwardGreedy(absl::Span<StepInput> steps) {
  auto ids = Step(steps, false, StepOutput::kGreedyIds);
  if (!ids.ok()) return ids.status();
  return std::vector<int32_t>(ids->data<int32_t>(), ids->data<int32_t>() + ids->numel());
}

absl::StatusOr<Tensor> Engine::Step(absl::Span<StepInput> steps, bool all_positions, StepOutput output) {
  if (CanReplay(steps, all_positions)) return ReplayDecode(steps, output);
  double t = StepClock();
  auto meta = PrepareStep(steps, config_, pool_.get());
  if (!meta.ok()) return meta.status();
  DeviceStep step;
  Upload(*meta, steps, &step);
  step.batch.max_seq_len = meta->max_len;
  const int64_t rows = all_positions ? meta->ids.numel() : meta->num_seqs;
  Tensor logits = NewActivation(rows, weights_.vocab_shard * comm_->size());
  Lap(&t, &times_.prepare);
  RunModel(steps, step, all_positions, &logits);
  Lap(&t, &times_.launch);
  Tensor host = HostOutput(logits, output);  // waits for the step's device work, which AfterStep may read
  Lap(&t, &times_.logits);
  FinishStep(steps, step.policy_active);
  Lap(&t, &times_.finish);
  ++times_.steps;
  return host;
}

}  // namespace chai
