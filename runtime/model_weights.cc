#include "runtime/model_weights.h"

#include <algorithm>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "parallel/head_placement.h"

namespace chai {
namespace {

// Blocks of `width` rows for each listed unit (a head, a KV head).
Ranges UnitRanges(const std::vector<int>& units, int64_t width) {
  Ranges r;
  for (int u : units) {
    if (!r.empty() && r.back().second == u * width) {
      r.back().second += width;  // merge adjacent blocks: contiguous slices stay views
    } else {
      r.emplace_back(u * width, (u + 1) * width);
    }
  }
  return r;
}

// The rows of every part, one part after another, in one new host tensor (the parts share their
// dtype and trailing dimensions; 1-D parts are concatenated).
Tensor StackRows(const std::vector<Tensor>& parts) {
  std::vector<int64_t> shape = parts[0].shape();
  shape[0] = 0;
  for (const Tensor& p : parts) shape[0] += p.dim(0);
  Tensor out = Tensor::Empty(shape, parts[0].dtype());
  char* dst = static_cast<char*>(out.raw());
  for (const Tensor& p : parts) {
    std::memcpy(dst, p.raw(), p.nbytes());
    dst += p.nbytes();
  }
  return out;
}

class Loader {
 public:
  Loader(const ModelConfig& c, const TensorSource& s, const ParallelLayout& l, DType dtype, Device device,
         const LoadProgress& progress)
      : c_(c), source_(s), layout_(l), dtype_(dtype), device_(device), progress_(progress) {}

  absl::StatusOr<ModelWeights> Load();

 private:
  // Fetches a tensor (checking its shape), slices it and converts it, on the host.
  absl::Status Fetch(const std::string& name, std::vector<int64_t> shape, Tensor* out, const Ranges& rows = {},
                     const Ranges& cols = {}) {
    auto t = source_.GetSlice(name, shape, rows, cols, dtype_);
    if (!t.ok()) return t.status();
    *out = *t;
    return absl::OkStatus();
  }
  // Moves a fetched tensor to the device and counts it.
  void Place(Tensor t, Tensor* out) {
    if (device_ != Device::kCpu) t = t.To(device_);
    w_.bytes += t.nbytes();
    *out = std::move(t);
  }
  absl::Status Take(const std::string& name, std::vector<int64_t> shape, Tensor* out, const Ranges& rows = {},
                    const Ranges& cols = {}) {
    Tensor t;
    if (auto s = Fetch(name, std::move(shape), &t, rows, cols); !s.ok()) return s;
    Place(std::move(t), out);
    return absl::OkStatus();
  }
  absl::Status TakeIf(bool present, const std::string& name, std::vector<int64_t> shape, Tensor* out,
                      const Ranges& rows = {}, const Ranges& cols = {}) {
    return present ? Take(name, std::move(shape), out, rows, cols) : absl::OkStatus();
  }
  // Fetches each part as Take would (same names, shapes and slices) and places them stacked by
  // rows as one tensor, so that one GEMM computes what several did. The parts are host tensors
  // that are dropped here: only the stacked copy reaches the device.
  struct Part {
    std::string name;
    std::vector<int64_t> shape;
    Ranges rows;
  };
  absl::Status TakeStacked(const std::vector<Part>& parts, Tensor* out) {
    std::vector<Tensor> fetched(parts.size());
    for (size_t i = 0; i < parts.size(); ++i) {
      if (auto s = Fetch(parts[i].name, parts[i].shape, &fetched[i], parts[i].rows); !s.ok()) return s;
    }
    Place(StackRows(fetched), out);
    return absl::OkStatus();
  }

  absl::Status LoadVocabulary();
  absl::Status LoadLayer(int l);
  std::string Prefix() const;

  const ModelConfig& c_;
  const TensorSource& source_;
  const ParallelLayout& layout_;
  DType dtype_;
  Device device_;
  LoadProgress progress_;
  ModelWeights w_;
};

std::string Loader::Prefix() const {
  if (c_.arch == Arch::kLlama) return "model.";
  // Some original OPT checkpoints name tensors without the leading "model.".
  return source_.Has("decoder.embed_tokens.weight") ? "decoder." : "model.decoder.";
}

absl::Status Loader::LoadVocabulary() {
  const int64_t vocab = c_.vocab_size, dim = c_.embed_dim();
  w_.vocab_shard = (vocab + layout_.world - 1) / layout_.world;
  w_.vocab_begin = w_.vocab_shard * layout_.rank;
  const int64_t end = std::min(vocab, w_.vocab_begin + w_.vocab_shard);
  auto take_vocab = [&](const std::string& name, Tensor* out) -> absl::Status {
    auto sliced = source_.GetSlice(name, {vocab, dim}, {{std::min(w_.vocab_begin, vocab), end}}, {});
    if (!sliced.ok()) return sliced.status();
    Tensor slice = *sliced;
    if (slice.dim(0) != w_.vocab_shard) {  // pad the last rank's shard with zero rows
      Tensor padded = Tensor::Zeros({w_.vocab_shard, dim}, slice.dtype());
      std::memcpy(padded.raw(), slice.raw(), slice.nbytes());
      slice = padded;
    }
    slice = slice.Cast(dtype_);
    if (device_ != Device::kCpu) slice = slice.To(device_);
    w_.bytes += slice.nbytes();
    *out = slice;
    return absl::OkStatus();
  };
  const std::string p = Prefix();
  if (auto s = take_vocab(p + "embed_tokens.weight", &w_.embed_tokens); !s.ok()) return s;
  if (c_.tie_word_embeddings && !source_.Has("lm_head.weight")) {
    w_.lm_head = w_.embed_tokens;
  } else if (c_.tie_word_embeddings && source_.Has("lm_head.weight")) {
    w_.lm_head = w_.embed_tokens;  // tied: HF ignores a stored copy
  } else {
    if (auto s = take_vocab("lm_head.weight", &w_.lm_head); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status Loader::LoadLayer(int l) {
  const int64_t h = c_.hidden_size, d = c_.head_dim, H = c_.num_heads, kv = c_.num_kv_heads;
  const int W = layout_.world, r = layout_.rank;
  LayerWeights& L = w_.layers[l];
  // Local query heads (slots of this rank through the permutation) and their KV heads.
  for (int slot = r * H / W; slot < (r + 1) * H / W; ++slot) {
    L.heads.push_back(layout_.head_perm.empty() ? slot : layout_.head_perm[l][slot]);
  }
  const int group = c_.kv_group_size();
  for (size_t i = 0; i < L.heads.size(); i += group) L.kv_heads.push_back(L.heads[i] / group);
  const Ranges q_rows = UnitRanges(L.heads, d), kv_rows = UnitRanges(L.kv_heads, d);
  std::vector<int> ffn_unit = {r};
  const int64_t ffn_local = c_.ffn_dim / W;
  const Ranges ffn_rows = UnitRanges(ffn_unit, ffn_local);
  const bool first = r == 0;

  const std::string p = absl::StrCat(Prefix(), "layers.", l, ".");
  const bool opt = c_.arch == Arch::kOpt;
  const std::string attn = p + "self_attn.";
  const bool qb = c_.qkv_bias(), mb = c_.mlp_has_bias();
  std::vector<absl::Status> st;
  // Q, K and V of this rank's heads, stacked (see LayerWeights::qkv_w).
  auto qkv_parts = [&](const std::string& suffix, std::vector<int64_t> q_shape, std::vector<int64_t> kv_shape) {
    return std::vector<Part>{{attn + "q_proj." + suffix, q_shape, q_rows},
                             {attn + "k_proj." + suffix, kv_shape, kv_rows},
                             {attn + "v_proj." + suffix, kv_shape, kv_rows}};
  };
  st.push_back(TakeStacked(qkv_parts("weight", {H * d, h}, {kv * d, h}), &L.qkv_w));
  if (qb) st.push_back(TakeStacked(qkv_parts("bias", {H * d}, {kv * d}), &L.qkv_b));
  const std::string o = attn + (opt ? "out_proj." : "o_proj.");
  st.push_back(Take(o + "weight", {h, H * d}, &L.o_w, {}, q_rows));
  st.push_back(TakeIf(qb && first, o + "bias", {h}, &L.o_b));
  if (opt) {
    st.push_back(Take(p + "self_attn_layer_norm.weight", {h}, &L.attn_norm_w));
    st.push_back(Take(p + "self_attn_layer_norm.bias", {h}, &L.attn_norm_b));
    st.push_back(Take(p + "final_layer_norm.weight", {h}, &L.mlp_norm_w));
    st.push_back(Take(p + "final_layer_norm.bias", {h}, &L.mlp_norm_b));
    st.push_back(Take(p + "fc1.weight", {c_.ffn_dim, h}, &L.up_w, ffn_rows));
    st.push_back(TakeIf(mb, p + "fc1.bias", {c_.ffn_dim}, &L.up_b, ffn_rows));
    st.push_back(Take(p + "fc2.weight", {h, c_.ffn_dim}, &L.down_w, {}, ffn_rows));
    st.push_back(TakeIf(mb && first, p + "fc2.bias", {h}, &L.down_b));
  } else {
    st.push_back(Take(p + "input_layernorm.weight", {h}, &L.attn_norm_w));
    st.push_back(Take(p + "post_attention_layernorm.weight", {h}, &L.mlp_norm_w));
    const std::string m = p + "mlp.";
    // gate and up of this rank, stacked (see LayerWeights::gate_up_w).
    st.push_back(TakeStacked(
        {{m + "gate_proj.weight", {c_.ffn_dim, h}, ffn_rows}, {m + "up_proj.weight", {c_.ffn_dim, h}, ffn_rows}},
        &L.gate_up_w));
    if (mb) {
      st.push_back(
          TakeStacked({{m + "gate_proj.bias", {c_.ffn_dim}, ffn_rows}, {m + "up_proj.bias", {c_.ffn_dim}, ffn_rows}},
                      &L.gate_up_b));
    }
    st.push_back(Take(m + "down_proj.weight", {h, c_.ffn_dim}, &L.down_w, {}, ffn_rows));
    st.push_back(TakeIf(mb && first, m + "down_proj.bias", {h}, &L.down_b));
  }
  for (auto& s : st)
    if (!s.ok()) return s;
  return absl::OkStatus();
}

absl::StatusOr<ModelWeights> Loader::Load() {
  if (auto s = LoadVocabulary(); !s.ok()) return s;
  const std::string p = Prefix();
  const int64_t h = c_.hidden_size;
  std::vector<absl::Status> st;
  if (c_.arch == Arch::kOpt) {
    st.push_back(Take(p + "embed_positions.weight", {c_.max_positions + c_.position_offset, h}, &w_.embed_positions));
    st.push_back(TakeIf(c_.has_projection(), p + "project_in.weight", {h, c_.word_embed_proj_dim}, &w_.project_in));
    st.push_back(TakeIf(c_.has_projection(), p + "project_out.weight", {c_.word_embed_proj_dim, h}, &w_.project_out));
    st.push_back(TakeIf(c_.final_layer_norm, p + "final_layer_norm.weight", {h}, &w_.final_norm_w));
    st.push_back(TakeIf(c_.final_layer_norm, p + "final_layer_norm.bias", {h}, &w_.final_norm_b));
  } else {
    st.push_back(Take(p + "norm.weight", {h}, &w_.final_norm_w));
  }
  for (auto& s : st)
    if (!s.ok()) return s;
  w_.layers.resize(c_.num_layers);
  for (int l = 0; l < c_.num_layers; ++l) {
    if (auto s = LoadLayer(l); !s.ok()) return s;
    if (progress_) progress_(l + 1, c_.num_layers);
  }
  w_.local_heads = c_.num_heads / layout_.world;
  w_.local_kv_heads = c_.num_kv_heads / layout_.world;
  w_.local_ffn = c_.ffn_dim / layout_.world;
  return std::move(w_);
}

}  // namespace

absl::Status CheckSplit(const ModelConfig& c, const ParallelLayout& layout) {
  const int W = layout.world;
  if (W < 1 || layout.rank < 0 || layout.rank >= W) return absl::InvalidArgumentError("invalid rank/world size");
  auto err = [&](absl::string_view what, int n) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot split the model over ", W, " ranks: ", what, " (", n, ") is not divisible by ", W));
  };
  if (W > c.num_heads) {
    return absl::InvalidArgumentError(absl::StrCat("cannot split the model over ", W, " ranks: more ranks than "
                                                   "attention heads (", c.num_heads, ")"));
  }
  if (c.num_heads % W) return err("num_attention_heads", c.num_heads);
  if (c.num_kv_heads % W) return err("num_key_value_heads", c.num_kv_heads);
  if (c.ffn_dim % W) return err("the feed-forward size", c.ffn_dim);
  if (!layout.head_perm.empty()) {
    HeadPlacement placement{W, layout.head_perm};
    return placement.Validate(c.num_layers, c.num_heads, W, c.kv_group_size());
  }
  return absl::OkStatus();
}

int64_t MinWeightBytesPerRank(const ModelConfig& c, int world, DType dtype) {
  const int64_t W = std::max(world, 1), h = c.hidden_size, d = c.head_dim;
  const int64_t vocab_shard = (int64_t{c.vocab_size} + W - 1) / W;
  int64_t elements = vocab_shard * c.embed_dim() * (c.tie_word_embeddings ? 1 : 2);
  if (c.arch == Arch::kOpt) {
    elements += int64_t{c.max_positions + c.position_offset} * h;
    if (c.has_projection()) elements += 2 * h * c.word_embed_proj_dim;
  }
  const int64_t heads = c.num_heads / W, kv_heads = c.num_kv_heads / W, ffn = c.ffn_dim / W;
  const int64_t mlp_matrices = c.arch == Arch::kOpt ? 2 : 3;
  const int64_t per_layer = (heads + 2 * kv_heads) * d * h + h * heads * d + mlp_matrices * ffn * h;
  elements += per_layer * c.num_layers;
  return elements * static_cast<int64_t>(DTypeSize(dtype));
}

absl::StatusOr<ModelWeights> LoadWeights(const ModelConfig& config, const TensorSource& source,
                                         const ParallelLayout& layout, DType dtype, Device device,
                                         const LoadProgress& progress) {
  if (auto s = CheckSplit(config, layout); !s.ok()) return s;
  return Loader(config, source, layout, dtype, device, progress).Load();
}

}  // namespace chai
