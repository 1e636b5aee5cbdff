// The model forward pass: prefill and incremental decode for a batch of sequences of different
// lengths, on one rank of a tensor-parallel group.
//
// Token rows of all sequences are concatenated for the dense layers (one GEMM per weight per
// step); attention reads each sequence's blocks of the paged KV cache. Collectives: an
// all-reduce after the embedding (vocabulary-parallel), after out_proj and after the MLP
// (row-parallel), and an all-gather of the logits.
#ifndef CHAI_RUNTIME_ENGINE_H_
#define CHAI_RUNTIME_ENGINE_H_

#include <map>
#include <memory>
#include <optional>
#include <tuple>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "kernels/host_readback.h"
#include "kernels/host_upload.h"
#include "kernels/ops.h"
#include "kernels/paged_kv.h"
#include "parallel/communicator.h"
#include "runtime/block_tables.h"
#include "runtime/kv_cache.h"
#include "runtime/model_config.h"
#include "runtime/model_weights.h"
#include "runtime/sequence.h"
#include "runtime/step_metadata.h"

namespace chai {

// Hook for attention variants (CHAI): called per sequence and layer just before attention,
// with the sequence's new queries and keys ([n, local heads * d], after rotary) and the cache
// already holding this step's K/V. It may change seq->score_head[layer] and drop K heads.
class AttentionPolicy {
 public:
  virtual ~AttentionPolicy() = default;
  virtual void BeforeAttention(Sequence* seq, int layer, const Tensor& q, const Tensor& k, int64_t past_len) = 0;
  // Called once per layer after BeforeAttention has run for every sequence of the step and the
  // tables are on the device, with the layer's cache view and score-head maps ([rows, heads],
  // indexed by Sequence::kv.row()). Device work enqueued here runs before the layer's attention
  // and may rewrite the step's sequences' maps there (CHAI clustering on the device); the host
  // learns its results in AfterStep.
  virtual void BeforeLayerAttention(int layer, const PagedKv& kv, const Tensor& score_heads) {}
  // Called once per sequence after the step's device work has finished (its logits are on the
  // host). It may change seq->score_head (the engine sends the maps before the next step) and
  // drop K heads (nothing reads their blocks any more).
  virtual void AfterStep(Sequence* seq) {}
  // False when BeforeAttention would do nothing for this sequence in the coming step (then the
  // engine may upload every layer's score-head map at once, or replay a captured step).
  virtual bool Active(const Sequence& seq) const = 0;
  // About how many heads share each representative's scores in `layer` (1: dense): a launch
  // hint for the attention kernel, which only its speed depends on.
  virtual int MembersPerRep(int layer) const { return 1; }
};

// Host wall time of the engine's steps, accumulated since construction (or the last reset), to
// show where a step's time goes beside the device work: prepare (metadata, KV reservations,
// uploads), launch (recording or replaying graphs, eager launches), logits (waiting for the
// device and copying the logits back: mostly the device's own time), finish (advancing caches,
// the CHAI policy's bookkeeping).
struct StepTimes {
  double prepare = 0, launch = 0, logits = 0, finish = 0;
  int64_t steps = 0;
  // Greedy steps through EnqueueGreedy: those given the step before as their feed (Generate's
  // pipelined loop enqueued them before that step's tokens were read), and those queued behind
  // the device's work without waiting for it (replayed graphs; none on the CPU).
  int64_t fed = 0, queued = 0;
};

// What the engine folds into its Linears (ops::LinearFused) on the steps where that is one kernel:
// the decode GEMV (CUDA, fp16/bf16, at most 8 rows). Prefill keeps the separate kernels.
enum class LinearFusion {
  kNone,
  // The MLP's activation in its first GEMV's epilogue (SiLU(gate) * up over LLaMA's stacked
  // gate|up, ReLU after OPT's fc1), at any TP: one kernel a layer fewer, the logits unchanged bit
  // for bit. The default: LLaMA-7B fp16 on an H100 decoded 2% faster at batch 1 and 3% at batch 8
  // (docs/cuda-backend.md).
  kActivation,
  // LLaMA at TP = 1 (elsewhere as kActivation: at TP > 1 the all-reduce fuses the residual add and
  // the norm, and OPT's LayerNorms are not folded): also each RMSNorm folded into the GEMV that
  // reads it and each residual add in the GEMV before it: 5 kernels a layer with the Q|K|V append (6
  // without), the final norm in the LM head. No dependable gain over kActivation on an H200 (within
  // +-3% either way over three calls): the fold adds 1-4 us to each GEMV it enters, about what the
  // norm kernels cost (benchmarks/results/llama-7b-tp1-h200.md); 2% slower on an H100 with the
  // append (llama-7b-tp1-h100.md).
  kAll,
};

struct EngineOptions {
  int64_t num_blocks = 0;  // KV blocks; 0: enough for `default_sequences` sequences of maximum length
  // Positions per KV block. 32, not 16: a step that crosses a block boundary takes a block for
  // every (layer, side, KV head) list of every sequence (2048 table entries per sequence for
  // LLaMA-7B, ~100 ns each on the host), and at 16 that step came every 16 tokens: LLaMA-7B fp16 on
  // an H200 spent 0.38 ms a step on average in 'host: prepare' at batch 32, 0.19 at 32 positions,
  // and decoded 0.9-2.9% faster at batch 1-32 (llama-7b-tp1-h200.md). Kernels run at both.
  int block_size = 32;
  int default_sequences = 4;
  int max_sequences = 64;  // sequences alive at once (rows of the device block tables)
  // Record decode steps (one token per sequence) per batch shape and replay them as CUDA
  // graphs, which removes the launch cost of hundreds of small kernels per step. Only for
  // CUDA engines (on the CPU there is no launch cost to save).
  bool capture_decode = false;
  LinearFusion linear_fusion = LinearFusion::kActivation;
  // Tests: fuse on every step and device (where LinearFused is no single kernel it is the
  // composition of the ops it stands for, so the results must not change).
  bool fuse_every_step = false;
  // Decode steps whose Linears are GEMVs (and no attention policy reading this step's K): the
  // Q|K|V GEMV splits, rotates and appends K and V to the cache in its epilogue
  // (ops::QkvLinearAppend), one kernel a layer fewer. On by default (CHAI_DECODE_QKV_APPEND=0
  // turns it off): LLaMA-7B fp16 on an H100 decoded 2.3% faster at batch 1 and 3.1% at batch 8
  // (benchmarks/results/llama-7b-tp1-h100.md).
  bool qkv_append_in_gemv = true;
  // Decode steps at TP > 1 where the IPC all-reduce serves: the o and down GEMVs write their
  // partial output straight into the peers' receive slots of the all-reduce that follows
  // (ops::LinearFused with a mirror), which then only receives (Communicator::AllReducePushedAddNorm):
  // the push leaves the all-reduce's critical path. Unset (the default): on at TP = 2, where it
  // was measured (LLaMA-7B on 2 x H200: 0.2-1.2% faster at batch 1, 0.3-1.1% at batch 8, logits
  // bit-identical), off at TP = 3-4 (4 x H200: no gain at batch 1). CHAI_ALLREDUCE_IN_GEMV=0|1 forces it.
  std::optional<bool> allreduce_in_gemv;
  // Greedy generation keeps the host one step ahead of the device (EnqueueGreedy; Generate uses
  // it where the engine replays graphs): the next step's host work overlaps the running step's
  // device work instead of following it. CHAI_DECODE_PIPELINE=0 turns it off.
  bool pipeline_greedy = true;
  // Tests: pipeline wherever no CHAI membership is being fixed, also where the steps then run
  // synchronously (the CPU), so that the generator's side of it runs there too.
  bool pipeline_every_step = false;
  // Decode steps on GPUs: bytes of the next GEMV's weights that the kernel before it fetches into
  // L2 while its own latency-bound work leaves DRAM idle (kernels/l2_prefetch.h): attention for
  // the o projection, the add + norm kernels for the GEMV that reads their output. 0: off.
  // CHAI_L2_PREFETCH=<attention MB>,<norm MB>[,alt|rows] sets them (alt, rows: the form of a hint
  // for a GEMV of one wave, L2HintForm in kernels/l2_prefetch.h). The
  // default, the norms' 6 MB only, from LLaMA-7B fp16 (llama-7b-tp1-h100.md, -h200.md, rounds
  // alternating with hints off): on an H100 TPOT 1.3% shorter at batch 1 (5.105 against 5.173 ms,
  // eight rounds) and 0.8% at batch 8; on an H200 0.9% at batch 1, even at batch 8. Attention's hint
  // (12 MB of the o projection) added nothing on the H100 and cost 0.5% at batch 8 on the H200;
  // larger norm budgets gave less. At TP > 1 the CLI's default is 8 MB for the norms (carried by
  // the fused all-reduce + norm; runtime/cli/model_options.cc says what was measured).
  struct L2PrefetchBudget {
    int64_t attention = 0, norm = int64_t{6} << 20;
    L2HintForm one_wave = L2HintForm::kHeads;
  } l2_prefetch;
};

class Engine {
 public:
  Engine(ModelConfig config, ModelWeights weights, Communicator* comm, DType dtype, Device device,
         const EngineOptions& options = {});

  ~Engine();
  const ModelConfig& config() const { return config_; }
  const ModelWeights& weights() const { return weights_; }
  Communicator* comm() const { return comm_; }
  DType dtype() const { return dtype_; }
  Device device() const { return device_; }
  const KvBlockPool& kv_pool() const { return *pool_; }
  const StepTimes& step_times() const { return times_; }
  void ResetStepTimes() { times_ = {}; }
  void set_attention_policy(AttentionPolicy* policy) { policy_ = policy; }
  // Whether decode steps' o and down GEMVs push their partial output into the IPC all-reduce
  // themselves (EngineOptions::allreduce_in_gemv, where the communicator's path offers it), for
  // benchmark headers.
  bool GemvPushesAllReduce() const;
  // Whether EnqueueGreedy would enqueue these steps without waiting for the device: pipelining on
  // (EngineOptions::pipeline_greedy) and steps a recorded graph can replay (a step on a GPU with
  // graphs, one token a sequence, no CHAI membership being fixed; EngineOptions::pipeline_every_step
  // drops the graph condition).
  bool PipelinesGreedy(absl::Span<StepInput> steps) const;

  // A new, empty sequence; an error when max_sequences are alive already.
  absl::StatusOr<std::unique_ptr<Sequence>> NewSequence();

  // Runs the new tokens of every step through the model, appending to each cache. Returns host
  // fp32 logits: [sum of new tokens, vocab] when all_positions, else [steps, vocab] for the
  // last new token of each sequence. Errors: token ids out of range, sequences too long, KV
  // cache full (nothing is computed then).
  absl::StatusOr<Tensor> Forward(absl::Span<StepInput> steps, bool all_positions);
  // As Forward(steps, false), but returns only each sequence's greedy next token: the first
  // argmax of its last row's logits over the vocabulary (Argmax's rule), taken on the engine's
  // device: on a GPU only [steps] ids come back, not [steps, vocab] fp32 logits.
  absl::StatusOr<std::vector<int32_t>> ForwardGreedy(absl::Span<StepInput> steps);

  // Greedy decode with the host one step ahead of the device (runtime/engine_pipeline.cc).
  // EnqueueGreedy enqueues a step of one new token per sequence and returns before the device has
  // run it, its host side done (metadata, KV reservations, caches advanced); CollectGreedy waits
  // for its ids. With `feed` (a step enqueued earlier over the same sequences in the same order),
  // each sequence's input token is that step's id for it, copied on the device, and the tokens in
  // `steps` are placeholders (any valid id): the host prepares step N + 1 while the device runs
  // step N, and the device goes from one to the next without waiting for the host. Steps a graph
  // cannot replay (eager engines, the CPU, a CHAI policy fixing membership, the first steps of a
  // shape) run at once, after reading the feed's ids on the host; their ids are ready on return.
  // At most two steps may be uncollected at a time, and they are collected in order.
  struct PendingGreedy {
    std::vector<int32_t> ids;  // valid once collected
    bool collected = false;
    int parity = -1;     // a step in flight: its host readback half
    int64_t launch = -1;  // and its number among the engine's pipelined launches
    Tensor device_ids;    // [steps] int32 on the engine's device, for a step fed by this one
  };
  absl::StatusOr<PendingGreedy> EnqueueGreedy(absl::Span<StepInput> steps, PendingGreedy* feed);
  const std::vector<int32_t>& CollectGreedy(PendingGreedy* pending);

 private:
  struct DeviceStep;  // the step's metadata on the engine's device
  struct GraphSlot;   // a recorded decode step for one batch size and length bucket
  // staging: the step's metadata goes without waiting for the device, through that half
  // (HostUpload); otherwise the copy returns when done.
  void Upload(const StepMetadata& meta, absl::Span<StepInput> steps, DeviceStep* step, HostUpload* staging = nullptr,
              int parity = 0);
  // Embedding, layers and LM head; writes [rows, vocab_shard * world] logits into *logits.
  void RunModel(absl::Span<StepInput> steps, const DeviceStep& step, bool all_positions, Tensor* logits);
  // What a step hands back to the host: fp32 logits [rows, vocab], or greedy ids int32 [steps].
  enum class StepOutput { kLogits, kGreedyIds };
  absl::StatusOr<Tensor> Step(absl::Span<StepInput> steps, bool all_positions, StepOutput output);
  absl::StatusOr<Tensor> ReplayDecode(absl::Span<StepInput> steps, StepOutput output);
  // The recorded step for meta's batch size and length bucket (made empty the first time).
  GraphSlot* SlotFor(const StepMetadata& meta);
  // EnqueueGreedy's step in flight: the slot's graph replayed after the metadata (and the fed ids).
  PendingGreedy EnqueueReplay(const StepMetadata& meta, absl::Span<StepInput> steps, GraphSlot* slot,
                              const PendingGreedy* feed, double t);
  bool CanReplay(absl::Span<StepInput> steps, bool all_positions) const;
  // After the step's logits reached the host: advances the caches and runs the policy's AfterStep.
  void FinishStep(absl::Span<StepInput> steps, bool policy_active);
  Tensor HostLogits(const Tensor& logits) const;
  Tensor GreedyIds(const Tensor& logits) const;
  Tensor HostOutput(const Tensor& logits, StepOutput output) const {
    return output == StepOutput::kLogits ? HostLogits(logits) : GreedyIds(logits);
  }
  Tensor Embed(const DeviceStep& step);
  struct SublayerInput;
  // The sublayers read their input (Norm(x) pre-LN, x post-LN), add their output into the
  // residual stream *x and return the next sublayer's input (see RunModel).
  SublayerInput AttentionBlock(int layer, absl::Span<StepInput> steps, const DeviceStep& step,
                               const SublayerInput& in, Tensor* x);
  SublayerInput MlpBlock(int layer, const SublayerInput& in, Tensor* x);
  // A sublayer's first Linear (then SiLU(gate) * up of its halves with kSiluMul, ReLU with kRelu) and its last
  // Linear with the residual add and the next norm after it (see SublayerInput).
  void InputLinear(const SublayerInput& in, const Tensor& w, const Tensor& b, ops::LinearOutput output, Tensor* out);
  // then: the next GEMV's first weights, for the add + norm kernel to fetch into L2 (NextWeights).
  SublayerInput OutputLinear(const SublayerInput& in, const Tensor& a, const Tensor& w, const Tensor& b, Tensor* x,
                             const Tensor& norm_w, const Tensor& norm_b, bool in_place, const L2Prefetch& then = {});
  // The first `budget` bytes of w that the Linear reading rows like x's streams (an L2 prefetch
  // hint: EngineOptions::l2_prefetch); empty where the budget is 0 or no decode GEMV applies.
  L2Prefetch NextWeights(const Tensor& x, const Tensor& w, ops::LinearOutput output, int64_t budget) const;
  // NextWeights for the MLP's first Linear of `layer` (the add + norm kernel's hint after attention).
  L2Prefetch MlpInputWeights(int layer, const SublayerInput& in, const Tensor& x) const;
  LinearFusion StepFusion(const Tensor& x) const;
  // final: the final hidden states' rows, as the last sublayer left them.
  void Logits(const SublayerInput& final, Tensor* out);
  void AllReduce(Tensor* t);
  Tensor Norm(const Tensor& x, const Tensor& w, const Tensor& b);
  Tensor AllReduceAddNorm(Tensor* x, Tensor* partial, const Tensor& w, const Tensor& b, bool in_place,
                          const L2Prefetch& then);
  Tensor AddNorm(Tensor* x, const Tensor& y, const Tensor& w, const Tensor& b, bool in_place,
                 const L2Prefetch& then = {});
  Tensor NewActivation(int64_t rows, int64_t cols) const;
  Tensor ToDevice(const Tensor& host) const;

  ModelConfig config_;
  ModelWeights weights_;
  Communicator* comm_;
  DType dtype_;
  Device device_;
  std::unique_ptr<KvBlockPool> pool_;
  std::unique_ptr<BlockTables> tables_;
  bool capture_decode_;
  LinearFusion linear_fusion_;
  bool fuse_every_step_;
  bool qkv_append_in_gemv_;
  bool allreduce_in_gemv_;
  bool pipeline_greedy_;
  bool pipeline_every_step_;
  EngineOptions::L2PrefetchBudget l2_prefetch_;
  // By (attention policy, batch size, length bucket): a recorded step holds the policy's launch
  // hints (CHAI layers' kernels), so a run under another policy (chai bench --compare switches
  // between dense and CHAI on one engine) must not replay it.
  std::map<std::tuple<const AttentionPolicy*, int, int64_t>, std::unique_ptr<GraphSlot>> graphs_;
  AttentionPolicy* policy_ = nullptr;
  StepTimes times_;
  // Pipelined greedy steps (EnqueueGreedy): their ids' host copies, one per parity, and which
  // parity's step is still uncollected.
  HostReadback greedy_readback_[2];
  int64_t greedy_owner_[2] = {-1, -1};  // the launch whose ids a half holds until collected; -1: none
  int64_t greedy_launches_ = 0;
};

}  // namespace chai

#endif  // CHAI_RUNTIME_ENGINE_H_
