// The weights one rank holds, already sliced for tensor parallelism and converted to the run
// dtype and device. Names follow the role, not the checkpoint (OPT fc1 is `up`, fc2 `down`).
#ifndef CHAI_RUNTIME_MODEL_WEIGHTS_H_
#define CHAI_RUNTIME_MODEL_WEIGHTS_H_

#include <functional>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/tensor.h"
#include "runtime/model_config.h"
#include "runtime/tensor_source.h"

namespace chai {

// How the model is split across the ranks of a tensor-parallel group.
struct ParallelLayout {
  int rank = 0;
  int world = 1;
  // head_perm[layer][slot] = original query head; rank r owns slots [r*H/W, (r+1)*H/W).
  // Empty means identity (contiguous blocks).
  std::vector<std::vector<int>> head_perm;
};

struct LayerWeights {
  Tensor attn_norm_w, attn_norm_b;  // OPT self_attn_layer_norm / LLaMA input_layernorm
  // This rank's Q, K and V rows stacked into one matrix, [qw + 2 * kvw, hidden] with qw = local
  // heads * head_dim and kvw = local KV heads * head_dim (after slicing and head permutation;
  // biases likewise, [qw + 2 * kvw]): one GEMM per step instead of three, and at decode one wide
  // GEMV, which streams its weights closer to the copy bandwidth than three narrow ones.
  Tensor qkv_w, qkv_b;
  Tensor o_w, o_b;                  // o_b only on rank 0: row-parallel bias is added once
  Tensor mlp_norm_w, mlp_norm_b;    // OPT final_layer_norm (per layer) / LLaMA post_attention_layernorm
  Tensor gate_up_w, gate_up_b;      // LLaMA: gate_proj rows then up_proj rows of this rank, [2 * local ffn, hidden]
  Tensor up_w, up_b;                // OPT fc1 only
  Tensor down_w, down_b;            // OPT fc2 / LLaMA down_proj; bias only on rank 0
  std::vector<int> heads;           // original query heads held here, in slot order
  std::vector<int> kv_heads;        // original KV heads held here
};

struct ModelWeights {
  Tensor embed_tokens;    // [vocab_shard, embed_dim]: rows [vocab_begin, vocab_begin + vocab_shard)
  Tensor lm_head;         // [vocab_shard, embed_dim] (shares storage with embed_tokens when tied)
  int64_t vocab_begin = 0;
  int64_t vocab_shard = 0;  // ceil(vocab / world); the last rank's tail rows are zero padding
  Tensor embed_positions;  // OPT learned positions
  Tensor project_in, project_out;  // OPT word_embed_proj_dim != hidden
  Tensor final_norm_w, final_norm_b;
  std::vector<LayerWeights> layers;
  int local_heads = 0, local_kv_heads = 0, local_ffn = 0;
  size_t bytes = 0;  // bytes of weights held on this rank
};

// Checks that the model can be split over `world` ranks; a one-line error says why not.
absl::Status CheckSplit(const ModelConfig& config, const ParallelLayout& layout);

// A lower bound of the bytes of weights one of `world` ranks holds in `dtype`: the matrices as
// LoadWeights shards them (norms and biases left out). Enough to refuse a model that cannot fit
// a GPU before a load that would fail after a minute.
int64_t MinWeightBytesPerRank(const ModelConfig& config, int world, DType dtype);

// Called after each decoder layer is in place with (layers done, layers in all): progress for
// loads that take a while (OPT-66B's random weights: over a minute).
using LoadProgress = std::function<void(int done, int total)>;

// Loads this rank's slice of every weight from `source` into `dtype` on `device`.
absl::StatusOr<ModelWeights> LoadWeights(const ModelConfig& config, const TensorSource& source,
                                         const ParallelLayout& layout, DType dtype, Device device,
                                         const LoadProgress& progress = nullptr);

}  // namespace chai

#endif  // CHAI_RUNTIME_MODEL_WEIGHTS_H_
