#include "runtime/engine.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/ops.h"

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

// Everything about a step that does not change across layers, on the engine's device.
struct Engine::StepMeta {
  Tensor ids, positions, pos_rows;  // int32 [T]; pos_rows: OPT's learned-position rows
  BatchLayout batch;
  Tensor tables;  // int32 [layers, num_seqs * 2 * kv_heads * max_blocks]
  int max_blocks = 0;
  std::vector<int64_t> past;  // per sequence, positions before this step
};

Engine::Engine(ModelConfig config, ModelWeights weights, Communicator* comm, DType dtype, Device device,
               const KvCacheOptions& kv)
    : config_(std::move(config)), weights_(std::move(weights)), comm_(comm), dtype_(dtype), device_(device) {
  int64_t blocks = kv.num_blocks;
  if (blocks <= 0) {
    blocks = kv.default_sequences * BlocksForSequence(config_.max_positions, config_.num_layers,
                                                      weights_.local_kv_heads, kv.block_size);
  }
  pool_ = std::make_unique<KvBlockPool>(blocks, kv.block_size, config_.head_dim, dtype_, device_);
}

std::unique_ptr<Sequence> Engine::NewSequence() {
  return std::make_unique<Sequence>(pool_.get(), config_.num_layers, weights_.local_heads, weights_.local_kv_heads);
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

Tensor Engine::Embed(const StepMeta& meta) {
  const int64_t T = meta.ids.numel();
  Tensor e = NewActivation(T, config_.embed_dim());
  ops::Embedding(weights_.embed_tokens, meta.ids, weights_.vocab_begin, &e);
  AllReduce(&e);  // each rank looked up only the ids in its vocabulary slice
  if (config_.arch == Arch::kLlama) return e;
  Tensor x = e;
  if (config_.has_projection()) {
    x = NewActivation(T, config_.hidden_size);
    ops::Linear(e, weights_.project_in, Tensor(), &x);
  }
  Tensor p = NewActivation(T, config_.hidden_size);
  ops::Embedding(weights_.embed_positions, meta.pos_rows, 0, &p);
  ops::Add(x, p, &x);
  return x;
}

void Engine::AttentionBlock(int layer, absl::Span<StepInput> steps, const StepMeta& meta, Tensor* x) {
  const LayerWeights& L = weights_.layers[layer];
  const int64_t T = x->dim(0), d = config_.head_dim;
  const int64_t qw = weights_.local_heads * d, kvw = weights_.local_kv_heads * d;
  const bool pre = config_.arch == Arch::kLlama || config_.pre_layer_norm;
  Tensor h = pre ? Norm(*x, L.attn_norm_w, L.attn_norm_b) : *x;
  Tensor q = NewActivation(T, qw), k = NewActivation(T, kvw), v = NewActivation(T, kvw);
  ops::Linear(h, L.q_w, L.q_b, &q);
  ops::Linear(h, L.k_w, L.k_b, &k);
  ops::Linear(h, L.v_w, L.v_b, &v);
  if (config_.arch == Arch::kLlama) {
    ops::Rotary(&q, meta.positions, weights_.local_heads, static_cast<int>(d), config_.rope_theta);
    ops::Rotary(&k, meta.positions, weights_.local_kv_heads, static_cast<int>(d), config_.rope_theta);
  }
  const int num_seqs = static_cast<int>(steps.size());
  PagedKv kv;
  kv.pool = pool_->storage();
  kv.tables = meta.tables.Rows(layer, layer + 1);
  kv.block_size = pool_->block_size();
  kv.kv_heads = weights_.local_kv_heads;
  kv.max_blocks = meta.max_blocks;
  ops::PagedAppend(k, v, kv, meta.batch);
  // The policy may fix CHAI membership now (it reads this step's K from the cache).
  Tensor score_head = Tensor::Empty({num_seqs, weights_.local_heads}, DType::kI32);
  int64_t row = 0;
  for (int s = 0; s < num_seqs; ++s) {
    Sequence* seq = steps[s].seq;
    const int64_t n = static_cast<int64_t>(steps[s].tokens.size());
    if (policy_ != nullptr) policy_->BeforeAttention(seq, layer, q.Rows(row, row + n), k.Rows(row, row + n), meta.past[s]);
    std::copy(seq->score_head[layer].begin(), seq->score_head[layer].end(),
              score_head.data<int32_t>() + int64_t{s} * weights_.local_heads);
    row += n;
  }
  Tensor attn = NewActivation(T, qw);
  ops::PagedAttention(q, kv, meta.batch, ToDevice(score_head), &attn);
  Tensor o = NewActivation(T, config_.hidden_size);
  ops::Linear(attn, L.o_w, L.o_b, &o);
  AllReduce(&o);
  ops::Add(*x, o, x);
  if (!pre) {
    Tensor normed = Norm(*x, L.attn_norm_w, L.attn_norm_b);
    *x = normed;
  }
}

void Engine::MlpBlock(int layer, Tensor* x) {
  const LayerWeights& L = weights_.layers[layer];
  const int64_t T = x->dim(0), ffn = weights_.local_ffn;
  const bool pre = config_.arch == Arch::kLlama || config_.pre_layer_norm;
  Tensor h = pre ? Norm(*x, L.mlp_norm_w, L.mlp_norm_b) : *x;
  Tensor a = NewActivation(T, ffn);
  if (config_.arch == Arch::kOpt) {
    ops::Linear(h, L.up_w, L.up_b, &a);
    ops::Relu(&a);
  } else {
    Tensor g = NewActivation(T, ffn), u = NewActivation(T, ffn);
    ops::Linear(h, L.gate_w, L.gate_b, &g);
    ops::Linear(h, L.up_w, L.up_b, &u);
    ops::SiluMul(g, u, &a);
  }
  Tensor m = NewActivation(T, config_.hidden_size);
  ops::Linear(a, L.down_w, L.down_b, &m);
  AllReduce(&m);
  ops::Add(*x, m, x);
  if (!pre) {
    Tensor normed = Norm(*x, L.mlp_norm_w, L.mlp_norm_b);
    *x = normed;
  }
}

Tensor Engine::Logits(const Tensor& hidden) {
  Tensor h = hidden;
  if (config_.arch == Arch::kLlama || config_.final_layer_norm) h = Norm(h, weights_.final_norm_w, weights_.final_norm_b);
  if (config_.has_projection()) {
    Tensor p = NewActivation(h.dim(0), config_.word_embed_proj_dim);
    ops::Linear(h, weights_.project_out, Tensor(), &p);
    h = p;
  }
  const int64_t rows = h.dim(0), shard = weights_.vocab_shard, vocab = config_.vocab_size;
  Tensor local = NewActivation(rows, shard);
  ops::Linear(h, weights_.lm_head, Tensor(), &local);
  Tensor full = local;
  if (comm_->size() > 1) {
    full = NewActivation(rows, shard * comm_->size());
    CheckCollective(comm_->AllGatherColumns(local, &full));
  }
  Tensor host = full.Cast(DType::kF32);
  if (host.device() != Device::kCpu) host = host.To(Device::kCpu);
  if (host.dim(1) == vocab) return host;
  Tensor trimmed = Tensor::Empty({rows, vocab}, DType::kF32);  // drop the vocabulary padding
  for (int64_t r = 0; r < rows; ++r) {
    std::memcpy(trimmed.data<float>() + r * vocab, host.data<float>() + r * host.dim(1), vocab * sizeof(float));
  }
  return trimmed;
}

absl::StatusOr<Tensor> Engine::Forward(absl::Span<StepInput> steps, bool all_positions) {
  if (steps.empty()) return absl::InvalidArgumentError("no sequences in the step");
  std::vector<int32_t> ids, positions, pos_rows;
  int64_t blocks_needed = 0;
  for (const StepInput& step : steps) {
    if (step.tokens.empty()) return absl::InvalidArgumentError("a sequence step has no tokens");
    const int64_t past = step.seq->length();
    const int64_t end = past + static_cast<int64_t>(step.tokens.size());
    if (end > config_.max_positions) {
      return absl::OutOfRangeError(absl::StrCat("sequence length ", end, " exceeds the model's maximum of ",
                                                config_.max_positions, " positions"));
    }
    for (size_t i = 0; i < step.tokens.size(); ++i) {
      const int32_t id = step.tokens[i];
      if (id < 0 || id >= config_.vocab_size) {
        return absl::InvalidArgumentError(
            absl::StrCat("token id ", id, " is out of range (vocabulary size ", config_.vocab_size, ")"));
      }
      ids.push_back(id);
      positions.push_back(static_cast<int32_t>(past + i));
      pos_rows.push_back(static_cast<int32_t>(past + i + config_.position_offset));
    }
    blocks_needed += step.seq->kv.BlocksNeededFor(end);
  }
  // All or nothing: a step that cannot fit takes no blocks.
  if (blocks_needed > pool_->free_blocks()) {
    std::vector<int32_t> none;
    return pool_->Allocate(blocks_needed, &none);
  }
  for (const StepInput& step : steps) {
    if (auto s = step.seq->kv.Reserve(step.seq->length() + static_cast<int64_t>(step.tokens.size())); !s.ok()) return s;
  }

  // Step metadata: rows per sequence, lengths after the append, block tables of every layer.
  StepMeta meta;
  const int num_seqs = static_cast<int>(steps.size());
  const int kvh = weights_.local_kv_heads, bs = pool_->block_size();
  Tensor q_start = Tensor::Empty({num_seqs + 1}, DType::kI32), lens = Tensor::Empty({num_seqs}, DType::kI32);
  q_start.data<int32_t>()[0] = 0;
  int max_len = 0, max_new = 0;
  for (int s = 0; s < num_seqs; ++s) {
    const int n = static_cast<int>(steps[s].tokens.size());
    meta.past.push_back(steps[s].seq->length());
    q_start.data<int32_t>()[s + 1] = q_start.data<int32_t>()[s] + n;
    lens.data<int32_t>()[s] = static_cast<int32_t>(steps[s].seq->length() + n);
    max_len = std::max(max_len, lens.data<int32_t>()[s]);
    max_new = std::max(max_new, n);
  }
  meta.max_blocks = (max_len + bs - 1) / bs;
  const int64_t per_layer = int64_t{num_seqs} * 2 * kvh * meta.max_blocks;
  Tensor tables = Tensor::Empty({config_.num_layers, per_layer}, DType::kI32);
  std::fill(tables.data<int32_t>(), tables.data<int32_t>() + tables.numel(), -1);
  for (int l = 0; l < config_.num_layers; ++l)
    for (int s = 0; s < num_seqs; ++s)
      for (int side = 0; side < 2; ++side)
        for (int g = 0; g < kvh; ++g) {
          const auto& blocks = steps[s].seq->kv.blocks(l, SequenceKvCache::Side(side), g);
          std::copy(blocks.begin(), blocks.end(),
                    tables.data<int32_t>() + l * per_layer + ((int64_t{s} * 2 + side) * kvh + g) * meta.max_blocks);
        }
  meta.tables = ToDevice(tables);
  meta.batch.q_start = ToDevice(q_start);
  meta.batch.seq_lens = ToDevice(lens);
  meta.batch.num_seqs = num_seqs;
  meta.batch.max_new_tokens = max_new;
  meta.batch.max_seq_len = max_len;
  const int64_t T = static_cast<int64_t>(ids.size());
  meta.ids = ToDevice(Tensor::FromInts(ids, {T}));
  meta.positions = ToDevice(Tensor::FromInts(positions, {T}));
  meta.pos_rows = ToDevice(Tensor::FromInts(pos_rows, {T}));

  Tensor x = Embed(meta);
  for (int l = 0; l < config_.num_layers; ++l) {
    AttentionBlock(l, steps, meta, &x);
    MlpBlock(l, &x);
  }
  for (StepInput& step : steps) {
    step.seq->kv.Advance(static_cast<int64_t>(step.tokens.size()));
    if (policy_ != nullptr) policy_->AfterStep(step.seq);
  }
  if (all_positions) return Logits(x);
  Tensor last = NewActivation(static_cast<int64_t>(steps.size()), x.dim(1));
  int64_t row = 0;
  for (size_t i = 0; i < steps.size(); ++i) {
    row += static_cast<int64_t>(steps[i].tokens.size());
    Tensor dst = last.Rows(i, i + 1);
    CopyTensor(x.Rows(row - 1, row), &dst);
  }
  return Logits(last);
}

}  // namespace chai
