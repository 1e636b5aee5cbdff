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

Engine::Engine(ModelConfig config, ModelWeights weights, Communicator* comm, DType dtype, Device device)
    : config_(std::move(config)), weights_(std::move(weights)), comm_(comm), dtype_(dtype), device_(device) {}

std::unique_ptr<Sequence> Engine::NewSequence() const {
  return std::make_unique<Sequence>(config_.num_layers, weights_.local_heads, weights_.local_kv_heads,
                                    config_.head_dim, dtype_, device_);
}

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

Tensor Engine::Embed(const std::vector<int32_t>& ids, const std::vector<int32_t>& positions) {
  const int64_t T = static_cast<int64_t>(ids.size());
  Tensor e = NewActivation(T, config_.embed_dim());
  ops::Embedding(weights_.embed_tokens, ids, weights_.vocab_begin, &e);
  AllReduce(&e);  // each rank looked up only the ids in its vocabulary slice
  if (config_.arch == Arch::kLlama) return e;
  Tensor x = e;
  if (config_.has_projection()) {
    x = NewActivation(T, config_.hidden_size);
    ops::Linear(e, weights_.project_in, Tensor(), &x);
  }
  std::vector<int32_t> pos_rows(positions.size());
  for (size_t i = 0; i < positions.size(); ++i) pos_rows[i] = positions[i] + config_.position_offset;
  Tensor p = NewActivation(T, config_.hidden_size);
  ops::Embedding(weights_.embed_positions, pos_rows, 0, &p);
  ops::Add(x, p, &x);
  return x;
}

void Engine::AttentionBlock(int layer, absl::Span<StepInput> steps, const std::vector<int32_t>& positions,
                            Tensor* x) {
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
    ops::Rotary(&q, positions, weights_.local_heads, static_cast<int>(d), config_.rope_theta);
    ops::Rotary(&k, positions, weights_.local_kv_heads, static_cast<int>(d), config_.rope_theta);
  }
  Tensor attn = NewActivation(T, qw);
  int64_t row = 0;
  for (StepInput& step : steps) {
    Sequence* seq = step.seq;
    const int64_t n = static_cast<int64_t>(step.tokens.size());
    const int64_t past = seq->length();
    Tensor qs = q.Rows(row, row + n), ks = k.Rows(row, row + n), vs = v.Rows(row, row + n);
    ops::AppendHeads(vs, absl::MakeSpan(seq->kv.v(layer)), past);
    ops::AppendHeads(ks, absl::MakeSpan(seq->kv.k(layer)), past);
    if (policy_ != nullptr) policy_->BeforeAttention(seq, layer, qs, ks, past);
    Tensor out = attn.Rows(row, row + n);
    ops::Attention(qs, seq->kv.k(layer), seq->kv.v(layer), past, seq->score_head[layer], &out);
    row += n;
  }
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
  std::vector<int32_t> ids, positions;
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
    }
    step.seq->kv.Reserve(end);
  }
  Tensor x = Embed(ids, positions);
  for (int l = 0; l < config_.num_layers; ++l) {
    AttentionBlock(l, steps, positions, &x);
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
