// The op interface the engine calls. Each op checks its operands and dispatches to the CPU
// reference (kernels/cpu) or the CUDA implementation by the tensors' device; the engine never
// branches on the device. Activations are row-major [tokens, features].
//
// Shapes and dtypes are the caller's contract (programmer errors abort with a message).
#ifndef CHAI_KERNELS_OPS_H_
#define CHAI_KERNELS_OPS_H_

#include <cstdint>

#include "absl/types/span.h"
#include "kernels/l2_prefetch.h"
#include "kernels/paged_kv.h"
#include "kernels/peer_mirror.h"
#include "kernels/tensor.h"

namespace chai::ops {

// out[t] = (x[t] - mean) / sqrt(var + eps) * weight + bias. bias may be undefined.
void LayerNorm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps, Tensor* out);
// out[t] = x[t] / sqrt(mean(x[t]^2) + eps) * weight.
void RmsNorm(const Tensor& x, const Tensor& weight, float eps, Tensor* out);

// The residual add fused with the norm that follows it (one pass over the rows instead of two):
// *x += y, then out = LayerNorm(*x) (RmsNorm(*x)). The values are those of Add followed by the
// norm: the sum is rounded to x's dtype and the norm reads that. out may alias *x (post-LN: the
// normalised rows replace the residual stream). `then`: weight bytes the next kernel streams, for
// the norm to fetch into L2 while it runs (a speed hint, see kernels/l2_prefetch.h; the CPU
// ignores it).
void AddLayerNorm(Tensor* x, const Tensor& y, const Tensor& weight, const Tensor& bias, float eps, Tensor* out,
                  const L2Prefetch& then = {});
void AddRmsNorm(Tensor* x, const Tensor& y, const Tensor& weight, float eps, Tensor* out,
                const L2Prefetch& then = {});

// out[T, N] = x[T, K] * weight[N, K]^T (+ bias[N] when defined).
void Linear(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor* out);

// Linear with the small ops of a decode step around it folded in. Defined as the composition
//   in = x, or RmsNorm(x, rms_norm_weight, rms_norm_eps) when rms_norm_weight is defined;
//   p  = Linear(in, weight, bias), [T, N];
//   kStore:   *out = p;
//   kAddTo:   Add(*out, p, out): *out [T, N] is the residual stream, updated in place;
//   kSiluMul: SiluMulFused(p, out): weight stacks gate | up rows (N even), out is [T, N / 2];
//   kRelu:    *out = p, then Relu(out) (OPT's fc1);
// which is what the CPU runs. On CUDA it is one kernel where Linear's decode GEMV applies
// (LinearFusedIsOneKernel), else that composition of the CUDA ops. The fused kernel's epilogues
// give the composition's values bit for bit; its norm is folded into the product (B = x * w_norm,
// the sums scaled by rsqrt(mean(x^2) + eps)), which differs from the composition in rounding only
// (kernels/cuda/gemv_fusion.cuh). out must not overlap x.
// With `mirror` (kStore, no norm; CUDA's decode GEMV only, see LinearMirrorIsOneKernel) each 16-byte
// group of out is also written into this rank's receive slot of the peers' flag-free IPC all-reduce
// (kernels/peer_mirror.h), so that the all-reduce of out that follows skips its own push. Where the
// GEMV does not apply the op fails rather than skip those writes (the peers would wait for them).
enum class LinearOutput { kStore, kAddTo, kSiluMul, kRelu };
struct LinearFusion {
  Tensor rms_norm_weight;  // [K]; undefined: the input is x itself
  float rms_norm_eps = 0.f;
  LinearOutput output = LinearOutput::kStore;
  const PeerMirror* mirror = nullptr;  // null: out only
  // A kernel before this one fetched into L2 the bytes LinearReadsFirst names for it (a speed hint:
  // the GEMV's configuration may depend on it, and with it the order in which a row's products are
  // summed, never what is computed; kernels/cuda/gemv.cu).
  bool first_bytes_in_l2 = false;
};
void LinearFused(const Tensor& x, const Tensor& weight, const Tensor& bias, const LinearFusion& fusion, Tensor* out);
// True when LinearFused on rows like x's runs as one kernel: on CUDA, fp16 or bf16, 1 to 8 rows,
// K % 8 == 0, 16-byte-aligned rows (and weights, which are). Never on the CPU.
bool LinearFusedIsOneKernel(const Tensor& x);
// True when LinearFused with a mirror runs as that one kernel on these operands (Linear's decode
// GEMV, weight rows a multiple of 8): where it is false, do not pass a mirror.
bool LinearMirrorIsOneKernel(const Tensor& x, const Tensor& weight);
// The first bytes, up to `budget`, of `weight` that Linear or LinearFused with this output (or
// QkvLinearAppend: kStore) streams on rows like x's where its decode GEMV applies: a hint for the
// kernel that runs before it to fetch them into L2 (kernels/l2_prefetch.h). Empty on the CPU and
// where the GEMV does not apply. `one_wave`: which bytes for a GEMV of one wave (L2HintForm,
// kernels/l2_prefetch.h; kernels/gemv_reads_first_plan.h plans them).
L2Prefetch LinearReadsFirst(const Tensor& x, const Tensor& weight, LinearOutput output, int64_t budget,
                            L2HintForm one_wave = L2HintForm::kHeads);

void Relu(Tensor* x);                                             // in place
void SiluMul(const Tensor& gate, const Tensor& up, Tensor* out);  // silu(gate) * up
// SiluMul on the output of the stacked gate | up GEMM: gate_up [T, 2F] holds gate in columns
// [0, F) and up in [F, 2F); out [T, F] = silu(gate) * up.
void SiluMulFused(const Tensor& gate_up, Tensor* out);
void Add(const Tensor& a, const Tensor& b, Tensor* out);          // out may alias a or b

// out[t] = table[ids[t] - row_begin] when that row is held here, else zeros. row_begin lets a
// rank hold a slice of the vocabulary (vocabulary-parallel embedding, summed across ranks).
void Embedding(const Tensor& table, const Tensor& ids, int64_t row_begin, Tensor* out);  // ids: int32 [T]

// Rotary position embedding in place on x [T, heads * head_dim], Hugging Face "rotate_half"
// layout: element i pairs with i + head_dim/2, angle = position * theta^(-2i/head_dim).
void Rotary(Tensor* x, const Tensor& positions, int num_heads, int head_dim, float theta);  // int32 [T]

// Splits the output of the stacked Q | K | V GEMM, qkv [T, (heads + 2 * kv_heads) * head_dim],
// into contiguous q [T, heads * head_dim], k and v [T, kv_heads * head_dim]; with apply_rotary,
// q and k are rotated on the way exactly as Rotary would (positions: int32 [T]; ignored, and may
// be undefined, without rotary).
void SplitQkvRotary(const Tensor& qkv, const Tensor& positions, int heads, int kv_heads, int head_dim, float theta,
                    bool apply_rotary, Tensor* q, Tensor* k, Tensor* v);

void SoftmaxRows(Tensor* x);  // in place over the last dimension

// Greedy decoding on the logits' device: ids[r] = the first index of the largest of x[r, 0..cols)
// (x [rows, >= cols] fp32/fp16/bf16, a padded vocabulary beyond cols ignored; NaN never wins, 0
// when a row is all NaN), ids int32 [rows] on x's device.
void ArgmaxRows(const Tensor& x, int64_t cols, Tensor* ids);

// dst[indices[i]] = values[i] for int32 tensors on one device (indices int32, distinct).
// Small updates of device-resident tables.
void ScatterInt32(const Tensor& indices, const Tensor& values, Tensor* dst);

// Writes the step's new K and V rows ([T, kv_heads * d] each) into their blocks (tables row
// batch.slots[s], or s): row i of sequence s goes to position seq_lens[s] - n_s + i of every head that has a block there
// (absent K blocks, i.e. dropped heads, are skipped).
void PagedAppend(const Tensor& k, const Tensor& v, const PagedKv& kv, const BatchLayout& batch);

// SplitQkvRotary followed by PagedAppend of its k and v, in one pass (one kernel on CUDA instead
// of two per layer): q as SplitQkvRotary writes it, and the step's K/V rows land in the cache
// exactly where PagedAppend(k, v, kv, batch) would put them (kv.kv_heads == kv_heads, the pool's
// head size == head_dim). k and v may be null: the engine reads this step's K back only while an
// attention policy works, and never V, so the rows then go to the cache only.
void SplitQkvRotaryAppend(const Tensor& qkv, const Tensor& positions, int heads, int kv_heads, int head_dim,
                          float theta, bool apply_rotary, const PagedKv& kv, const BatchLayout& batch, Tensor* q,
                          Tensor* k, Tensor* v);

// Linear(x, weight, bias) = qkv [T, (heads + 2 kv_heads) * head_dim], then
// SplitQkvRotaryAppend(qkv, ..., q, nullptr, nullptr): the decode step's Q | K | V projection with
// its split, rotary and cache append. On CUDA one GEMV kernel where Linear's decode GEMV applies,
// head_dim is even and batch.token_rows is defined (its epilogue rotates each head's element pairs
// and writes k and v into their slots; positions[t] must then be row t's cache position, as the
// engine's are, also without rotary), else the composition. With rms_norm_weight defined the
// projection reads RmsNorm(x, rms_norm_weight, rms_norm_eps) instead of x, as LinearFused does (on
// CUDA folded into the same kernel, rounding where LinearFused's folded norm rounds).
// first_bytes_in_l2: as LinearFusion's.
void QkvLinearAppend(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& positions, int heads,
                     int kv_heads, int head_dim, float theta, bool apply_rotary, const PagedKv& kv,
                     const BatchLayout& batch, Tensor* q, const Tensor& rms_norm_weight = Tensor(),
                     float rms_norm_eps = 0.f, bool first_bytes_in_l2 = false);

// Causal attention of the step's queries q [T, Hq * d] over the paged cache (which already holds
// this step's K/V). score_head: int32 [rows, Hq], indexed like the tables (by batch.slots[s], or
// by s); head h of sequence s uses the causal softmax of q_{s'} . K_{kv(s')} for s' = score_head[row][h] (its CHAI representative; itself when
// dense), applied to its own V_{kv(h)}; kv(h) = h / (Hq / kv_heads). Must satisfy
// score_head[s][s'] == s'. Scores are scaled by 1/sqrt(d). out: [T, Hq * d].
void PagedAttention(const Tensor& q, const PagedKv& kv, const BatchLayout& batch, const Tensor& score_head,
                    Tensor* out);

// The most local heads ChaiCluster takes (one CTA holds a problem's distance matrix).
inline constexpr int kChaiClusterMaxHeads = 128;

// One problem of ChaiCluster: one sequence at one layer.
struct ChaiClusterProblem {
  Tensor saved_q;     // [s, heads * d], s in 0..4: queries of positions 0..s-1; undefined when s == 0
  Tensor new_q;       // [>= 5 - s, heads * d]: queries of positions s..4 in its first rows
  int table_row = 0;  // the sequence's row in kv.tables (positions 0..4 lie in each K head's first block)
  int map_row = 0;    // the row of score_head to write; distinct among the problems of a call
  int order_row = 0;  // the row of `order` holding each local head's original index
  int clusters = 0;   // k, in [1, heads]
};

// CHAI's online clustering (DESIGN.md "Exact semantics") on the op's device, without a host
// round trip. Per problem: features P_h[i][j] = softmax_j(q_i . k_j / sqrt(d)) over positions
// 0..4 (keys from the cache; KV head h / (heads / kv_heads)), cosine distances, average linkage cut
// at `clusters` clusters, and for every head h the member of its cluster with the lowest original
// index order[order_row][*], whose local index goes to score_head[map_row][h]. The same numbers as
// runtime/chai (features.h, clustering.h, ChaiPolicy) step for step, ties included
// (kernels/chai_cluster_math.h). Several layers can go in one call: pass flattened [layers * rows]
// views of the tables, maps and orders, with the rows offset per layer. order, score_head:
// int32 [rows, heads], heads <= kChaiClusterMaxHeads; features (may be null): fp32 [problems, heads, 25], each
// problem's features (for tests). Queries share the pool's dtype.
void ChaiCluster(absl::Span<const ChaiClusterProblem> problems, const PagedKv& kv, const Tensor& order,
                 Tensor* score_head, Tensor* features = nullptr);

}  // namespace chai::ops

#endif  // CHAI_KERNELS_OPS_H_
