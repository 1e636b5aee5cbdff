// Engine: construction and the model's forward pass, layer by layer (a step's upload, replay and
// outputs: engine_step.cc).
#include "runtime/engine.h"

#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/status/status.h"
#include "kernels/ops.h"
#include "runtime/engine_internal.h"

namespace chai {
namespace {

// A failed collective leaves the ranks out of step; nothing sensible can continue.
void CheckCollective(const absl::Status& s) {
  if (!s.ok()) {
    std::fprintf(stderr, "chai: fatal: collective failed: %s\n", std::string(s.message()).c_str());
    std::abort();
  }
}

}  // namespace

Engine::Engine(ModelConfig config, ModelWeights weights, Communicator* comm, DType dtype, Device device,
               const EngineOptions& options)
    : config_(std::move(config)),
      weights_(std::move(weights)),
      comm_(comm),
      dtype_(dtype),
      device_(device),
      capture_decode_(options.capture_decode && device == Device::kCuda),
      linear_fusion_(options.linear_fusion),
      fuse_every_step_(options.fuse_every_step),
      qkv_append_in_gemv_(options.qkv_append_in_gemv),
      allreduce_in_gemv_(options.allreduce_in_gemv.value_or(comm->size() == 2)),
      pipeline_greedy_(options.pipeline_greedy),
      pipeline_every_step_(options.pipeline_every_step),
      l2_prefetch_(options.l2_prefetch) {
  // Blocks hold at least CHAI's first 5 positions, so they can be read back in one copy.
  if (options.block_size < 8) {
    std::fprintf(stderr, "chai: internal error: KV block size %d is below 8\n", options.block_size);
    std::abort();
  }
  int64_t blocks = options.num_blocks;
  if (blocks <= 0) {
    blocks = options.default_sequences * BlocksForSequence(config_.max_positions, config_.num_layers,
                                                           weights_.local_kv_heads, options.block_size);
  }
  pool_ = std::make_unique<KvBlockPool>(blocks, options.block_size, config_.head_dim, dtype_, device_);
  const int cap = (config_.max_positions + options.block_size - 1) / options.block_size;
  tables_ = std::make_unique<BlockTables>(options.max_sequences, config_.num_layers, weights_.local_kv_heads,
                                          weights_.local_heads, cap, device_);
}

Engine::~Engine() = default;

absl::StatusOr<std::unique_ptr<Sequence>> Engine::NewSequence() {
  auto row = tables_->AcquireRow();
  if (!row.ok()) return row.status();
  return std::make_unique<Sequence>(pool_.get(), tables_.get(), *row, config_.num_layers, weights_.local_heads,
                                    weights_.local_kv_heads);
}

bool Engine::GemvPushesAllReduce() const {
  PeerMirror probe;
  return allreduce_in_gemv_ && comm_->size() > 1 && comm_->AddNormMirror(1, config_.hidden_size, dtype_, &probe);
}

Tensor Engine::ToDevice(const Tensor& host) const { return device_ == Device::kCpu ? host : host.To(device_); }

Tensor Engine::NewActivation(int64_t rows, int64_t cols) const { return Tensor::Empty({rows, cols}, dtype_, device_); }

void Engine::AllReduce(Tensor* t) {
  if (comm_->size() > 1) CheckCollective(comm_->AllReduceSum(t));
}

Tensor Engine::Norm(const Tensor& x, const Tensor& w, const Tensor& b) {
  Tensor out = NewActivation(x.dim(0), x.dim(1));
  if (config_.arch == Arch::kOpt) {
    ops::LayerNorm(x, w, b, config_.layer_norm_eps, &out);
  } else {
    ops::RmsNorm(x, w, config_.rms_norm_eps, &out);
  }
  return out;
}

// The residual add that ends a sublayer, fused with the norm that comes next (one kernel
// instead of two): *x += y, then returns Norm(*x) with (w, b). in_place (post-LN) writes the
// norm over *x, which then is both the residual stream and the next input. Without norm
// weights (a pre-LN OPT model whose final norm was removed), just the add: the input is *x.
// The all-reduce of a row-parallel output and the residual add + norm after it: one fused
// collective where the communicator has one (the flag-free IPC path on GPUs), else the two steps.
// `then` goes to whichever runs: the add + norm kernel's extra CTAs, or the fused collective's
// blocks without a row.
Tensor Engine::AllReduceAddNorm(Tensor* x, Tensor* partial, const Tensor& w, const Tensor& b, bool in_place,
                                const L2Prefetch& then) {
  if (comm_->size() == 1 || !w.defined()) {
    AllReduce(partial);
    return AddNorm(x, *partial, w, b, in_place, then);
  }
  Tensor out = in_place ? *x : NewActivation(x->dim(0), x->dim(1));
  const bool rms = config_.arch != Arch::kOpt;
  CheckCollective(comm_->AllReduceAddNorm(partial, x, w, b, rms ? config_.rms_norm_eps : config_.layer_norm_eps,
                                          rms, &out, then));
  return out;
}

Tensor Engine::AddNorm(Tensor* x, const Tensor& y, const Tensor& w, const Tensor& b, bool in_place,
                       const L2Prefetch& then) {
  if (!w.defined()) {
    ops::Add(*x, y, x);
    return *x;
  }
  Tensor out = in_place ? *x : NewActivation(x->dim(0), x->dim(1));
  if (config_.arch == Arch::kOpt) {
    ops::AddLayerNorm(x, y, w, b, config_.layer_norm_eps, &out, then);
  } else {
    ops::AddRmsNorm(x, y, w, config_.rms_norm_eps, &out, then);
  }
  return out;
}

L2Prefetch Engine::NextWeights(const Tensor& x, const Tensor& w, ops::LinearOutput output, int64_t budget) const {
  if (budget <= 0) return L2Prefetch{};
  return ops::LinearReadsFirst(x, w, output, budget, l2_prefetch_.one_wave);
}

// The MLP's first Linear as InputLinear will launch it: gate | up with the SiLU epilogue (LLaMA) or
// fc1 with ReLU (OPT) where the activation is in the GEMV, else a plain GEMV over the same weight.
L2Prefetch Engine::MlpInputWeights(int layer, const SublayerInput& in, const Tensor& x) const {
  const LayerWeights& L = weights_.layers[layer];
  const bool llama = config_.arch == Arch::kLlama;
  const ops::LinearOutput output = !in.act_in_gemv ? ops::LinearOutput::kStore
                                   : llama         ? ops::LinearOutput::kSiluMul
                                                   : ops::LinearOutput::kRelu;
  return NextWeights(x, llama ? L.gate_up_w : L.up_w, output, l2_prefetch_.norm);
}

Tensor Engine::Embed(const DeviceStep& step) {
  const int64_t T = step.ids.numel();
  Tensor e = NewActivation(T, config_.embed_dim());
  ops::Embedding(weights_.embed_tokens, step.ids, weights_.vocab_begin, &e);
  AllReduce(&e);  // each rank looked up only the ids in its vocabulary slice
  if (config_.arch == Arch::kLlama) return e;
  Tensor x = e;
  if (config_.has_projection()) {
    x = NewActivation(T, config_.hidden_size);
    ops::Linear(e, weights_.project_in, Tensor(), &x);
  }
  Tensor p = NewActivation(T, config_.hidden_size);
  ops::Embedding(weights_.embed_positions, step.pos_rows, 0, &p);
  ops::Add(x, p, &x);
  return x;
}

// Decode steps on a GPU fold small kernels into the GEMVs (LinearFusion): the MLP's activation into
// its first GEMV (SiLU(gate) * up for LLaMA, ReLU for OPT; one kernel a layer fewer), at any TP;
// or, for LLaMA at TP = 1, everything (5 kernels: Q|K|V with the attention norm, split, rotary and
// append, attention, o adding into x, gate|up with the MLP norm and SiLU, down adding into x; the
// final norm in the LM head; 6 with CHAI_DECODE_QKV_APPEND=0). Prefill keeps cuBLASLt and the add
// + norm kernels, TP > 1 the all-reduce that fuses add + norm, OPT its LayerNorms: there kAll folds
// the activation only.
LinearFusion Engine::StepFusion(const Tensor& x) const {
  if (!fuse_every_step_ && !ops::LinearFusedIsOneKernel(x)) return LinearFusion::kNone;
  if (linear_fusion_ == LinearFusion::kAll && (comm_->size() != 1 || config_.arch != Arch::kLlama)) {
    return LinearFusion::kActivation;
  }
  return linear_fusion_;
}

void Engine::InputLinear(const SublayerInput& in, const Tensor& w, const Tensor& b, ops::LinearOutput output,
                         Tensor* out) {
  if (in.fused) {
    ops::LinearFused(in.h, w, b, ops::LinearFusion{in.norm_w, config_.rms_norm_eps, output, nullptr, in.hinted}, out);
    return;
  }
  if (output == ops::LinearOutput::kStore) {
    if (in.hinted && ops::LinearFusedIsOneKernel(in.h)) {
      // The GEMV whose first bytes the add + norm prefetched keeps the configuration the hint was
      // planned for (CHAI_GEMV_FOUR_WARPS=unhinted moves only unhinted ones).
      ops::LinearFused(in.h, w, b, ops::LinearFusion{.first_bytes_in_l2 = true}, out);
    } else {
      ops::Linear(in.h, w, b, out);
    }
    return;
  }
  if (in.act_in_gemv) {
    ops::LinearFused(in.h, w, b, ops::LinearFusion{.output = output, .first_bytes_in_l2 = in.hinted}, out);
    return;
  }
  if (output == ops::LinearOutput::kRelu) {
    ops::Linear(in.h, w, b, out);
    ops::Relu(out);
    return;
  }
  Tensor gate_up = NewActivation(in.h.dim(0), w.dim(0));  // kSiluMul: gate | up, then SiLU(gate) * up
  ops::Linear(in.h, w, b, &gate_up);
  ops::SiluMulFused(gate_up, out);
}

// Unfused, the add and the next norm are one kernel (AllReduceAddNorm); fused, the add is the
// GEMV's epilogue and the norm goes to the next Linear's prologue.
Engine::SublayerInput Engine::OutputLinear(const SublayerInput& in, const Tensor& a, const Tensor& w, const Tensor& b,
                                           Tensor* x, const Tensor& norm_w, const Tensor& norm_b, bool in_place,
                                           const L2Prefetch& then) {
  if (in.fused) {
    ops::LinearFused(a, w, b, ops::LinearFusion{.output = ops::LinearOutput::kAddTo}, x);
    return SublayerInput{*x, norm_w, true, in.act_in_gemv};
  }
  Tensor o = NewActivation(a.dim(0), w.dim(0));
  PeerMirror mirror;
  if (allreduce_in_gemv_ && comm_->size() > 1 && norm_w.defined() && ops::LinearMirrorIsOneKernel(a, w) &&
      comm_->AddNormMirror(a.dim(0), w.dim(0), a.dtype(), &mirror)) {
    // Every rank decides alike (the same shapes, the same set-up), so the pushes and the
    // receiving all-reduce pair up.
    ops::LinearFused(a, w, b, ops::LinearFusion{.mirror = &mirror}, &o);
    Tensor out = in_place ? *x : NewActivation(x->dim(0), x->dim(1));
    const bool rms = config_.arch != Arch::kOpt;
    CheckCollective(comm_->AllReducePushedAddNorm(&o, x, norm_w, norm_b,
                                                  rms ? config_.rms_norm_eps : config_.layer_norm_eps, rms, &out,
                                                  then));
    return SublayerInput{out, Tensor(), false, in.act_in_gemv, !then.empty()};
  }
  ops::Linear(a, w, b, &o);
  return SublayerInput{AllReduceAddNorm(x, &o, norm_w, norm_b, in_place, then), Tensor(), false, in.act_in_gemv,
                       !then.empty()};
}

Engine::SublayerInput Engine::AttentionBlock(int layer, absl::Span<StepInput> steps, const DeviceStep& step,
                                             const SublayerInput& in, Tensor* x) {
  const LayerWeights& L = weights_.layers[layer];
  const int64_t T = in.h.dim(0), d = config_.head_dim;
  const int64_t qw = weights_.local_heads * d, kvw = weights_.local_kv_heads * d;
  const bool pre = config_.arch == Arch::kLlama || config_.pre_layer_norm;
  PagedKv kv;
  kv.pool = pool_->storage();
  kv.tables = tables_->LayerTables(layer);
  kv.block_size = pool_->block_size();
  kv.kv_heads = weights_.local_kv_heads;
  kv.max_blocks = tables_->cap_blocks();
  kv.members_per_rep = policy_ != nullptr ? policy_->MembersPerRep(layer) : 1;  // launch hint only
  // Q, K and V in one GEMM over the stacked weights, then one kernel that splits it, applies
  // rotary to q and k (LLaMA) and writes the new K and V rows into the cache. Only q is kept,
  // and k while the policy reads this step's rows (never in a recorded decode graph).
  Tensor q = NewActivation(T, qw);
  Tensor k = step.policy_active ? NewActivation(T, kvw) : Tensor();
  const bool rotary = config_.arch == Arch::kLlama;
  if (qkv_append_in_gemv_ && !step.policy_active && ops::LinearFusedIsOneKernel(in.h)) {
    // Decode: the split, rotary and append in the Q|K|V GEMV's epilogue (ops::QkvLinearAppend), and
    // under LinearFusion::kAll the attention norm folded into the same GEMV.
    ops::QkvLinearAppend(in.h, L.qkv_w, L.qkv_b, step.positions, weights_.local_heads, weights_.local_kv_heads,
                         static_cast<int>(d), config_.rope_theta, rotary, kv, step.batch, &q,
                         in.fused ? in.norm_w : Tensor(), config_.rms_norm_eps, in.hinted);
  } else {
    Tensor qkv = NewActivation(T, qw + 2 * kvw);
    InputLinear(in, L.qkv_w, L.qkv_b, ops::LinearOutput::kStore, &qkv);
    // One kernel (split_qkv_append.cu on GPUs) where there were two: on an H100 it passed
    // fused_ops_gpu_test and the engine tests and timed the same as the pair (5.671 against 5.657
    // ms, LLaMA-7B batch 1; benchmarks/results/llama-7b-tp1-h100.md).
    ops::SplitQkvRotaryAppend(qkv, step.positions, weights_.local_heads, weights_.local_kv_heads, static_cast<int>(d),
                              config_.rope_theta, rotary, kv, step.batch, &q, step.policy_active ? &k : nullptr,
                              /*v=*/nullptr);
  }
  if (step.policy_active) {
    // CHAI may fix membership now (reading this step's K from the cache): push the new maps.
    int64_t row = 0;
    for (size_t s = 0; s < steps.size(); ++s) {
      Sequence* seq = steps[s].seq;
      const int64_t n = static_cast<int64_t>(steps[s].tokens.size());
      policy_->BeforeAttention(seq, layer, q.Rows(row, row + n), k.Rows(row, row + n), step.past[s]);
      tables_->SetScoreHeads(seq->kv.row(), layer, seq->score_head[layer]);
      row += n;
    }
    tables_->Flush();
    policy_->BeforeLayerAttention(layer, kv, tables_->LayerScoreHeads(layer));
  }
  Tensor attn = NewActivation(T, qw);
  kv.then = NextWeights(attn, L.o_w, ops::LinearOutput::kStore, l2_prefetch_.attention);
  ops::PagedAttention(q, kv, step.batch, tables_->LayerScoreHeads(layer), &attn);
  // Pre-LN: x += o fused with the MLP's input norm. Post-LN: x = Norm(x + o), this sublayer's norm.
  if (pre) {
    return OutputLinear(in, attn, L.o_w, L.o_b, x, L.mlp_norm_w, L.mlp_norm_b, /*in_place=*/false,
                        MlpInputWeights(layer, in, *x));
  }
  return OutputLinear(in, attn, L.o_w, L.o_b, x, L.attn_norm_w, L.attn_norm_b, /*in_place=*/true);
}

Engine::SublayerInput Engine::MlpBlock(int layer, const SublayerInput& in, Tensor* x) {
  const LayerWeights& L = weights_.layers[layer];
  const int64_t T = in.h.dim(0), ffn = weights_.local_ffn;
  const bool pre = config_.arch == Arch::kLlama || config_.pre_layer_norm;
  Tensor a = NewActivation(T, ffn);
  if (config_.arch == Arch::kOpt) {
    InputLinear(in, L.up_w, L.up_b, ops::LinearOutput::kRelu, &a);
  } else {
    // gate and up in one GEMM over the stacked weights; SiLU(gate) * up reads both halves.
    InputLinear(in, L.gate_up_w, L.gate_up_b, ops::LinearOutput::kSiluMul, &a);
  }
  if (!pre) return OutputLinear(in, a, L.down_w, L.down_b, x, L.mlp_norm_w, L.mlp_norm_b, /*in_place=*/true);
  // Pre-LN: x += m fused with the next layer's attention norm, or after the last layer with the
  // final norm (undefined when the model has none: then only the add).
  if (layer + 1 < config_.num_layers) {
    const LayerWeights& next = weights_.layers[layer + 1];
    const L2Prefetch then = NextWeights(*x, next.qkv_w, ops::LinearOutput::kStore, l2_prefetch_.norm);
    return OutputLinear(in, a, L.down_w, L.down_b, x, next.attn_norm_w, next.attn_norm_b, /*in_place=*/false, then);
  }
  return OutputLinear(in, a, L.down_w, L.down_b, x, weights_.final_norm_w, weights_.final_norm_b,
                      /*in_place=*/false);
}

void Engine::Logits(const SublayerInput& final, Tensor* out) {
  SublayerInput in = final;
  if (config_.has_projection()) {  // OPT-350m: never fused
    Tensor p = NewActivation(in.h.dim(0), config_.word_embed_proj_dim);
    ops::Linear(in.h, weights_.project_out, Tensor(), &p);
    in = SublayerInput{p};
  }
  if (comm_->size() == 1) {
    InputLinear(in, weights_.lm_head, Tensor(), ops::LinearOutput::kStore, out);
    return;
  }
  Tensor local = NewActivation(in.h.dim(0), weights_.vocab_shard);
  InputLinear(in, weights_.lm_head, Tensor(), ops::LinearOutput::kStore, &local);
  CheckCollective(comm_->AllGatherColumns(local, out));
}

void Engine::RunModel(absl::Span<StepInput> steps, const DeviceStep& step, bool all_positions, Tensor* logits) {
  // The layers carry the residual stream x and the next sublayer's input. Pre-LN, that is Norm(x):
  // only the first layer's attention norm is a kernel of its own; every later norm is fused with
  // the residual add before it (AddNorm), the final norm with the last MLP's; or, fused
  // (LinearFusion::kAll), every norm goes into the Linear that reads it and every add into the
  // Linear before it. Post-LN, the input is x (each sublayer ends with x = Norm(x + out), also one fused
  // kernel).
  const bool pre = config_.arch == Arch::kLlama || config_.pre_layer_norm;
  Tensor x = Embed(step);
  const LayerWeights& first = weights_.layers[0];  // configs have at least one layer
  const LinearFusion fusion = StepFusion(x);
  SublayerInput in{x, Tensor(), false, fusion != LinearFusion::kNone};
  if (fusion == LinearFusion::kAll) {
    in = SublayerInput{x, first.attn_norm_w, true, true};
  } else if (pre) {
    in.h = Norm(x, first.attn_norm_w, first.attn_norm_b);
  }
  for (int l = 0; l < config_.num_layers; ++l) {
    in = AttentionBlock(l, steps, step, in, &x);
    in = MlpBlock(l, in, &x);
  }
  if (!pre && weights_.final_norm_w.defined()) {
    in = SublayerInput{Norm(in.h, weights_.final_norm_w, weights_.final_norm_b)};
  }
  // Only each sequence's last new token needs logits: its row (before the final norm when that is
  // fused into the LM head; the norm is per row). A step of one token per sequence has just those.
  if (!all_positions && in.h.dim(0) != step.batch.num_seqs) {
    Tensor last = NewActivation(step.batch.num_seqs, in.h.dim(1));
    ops::Embedding(in.h, step.last_rows, 0, &last);
    in.h = last;
  }
  Logits(in, logits);
}

}  // namespace chai
