// Shape/device/dtype checks and dispatch to the backend implementations.
#include "kernels/ops.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <vector>

#include "kernels/argmax.h"
#include "kernels/chai_cluster_math.h"
#include "kernels/cpu/cpu_ops.h"
#ifdef CHAI_WITH_CUDA
#include "kernels/cuda/cuda_ops.h"
#endif

namespace chai::ops {
namespace {

// Operand mismatches are programmer errors: the engine builds every shape.
[[noreturn]] void Fail(const char* op, const char* what) {
  std::fprintf(stderr, "chai: internal error in op %s: %s\n", op, what);
  std::abort();
}

void Expect(bool ok, const char* op, const char* what) {
  if (!ok) Fail(op, what);
}

// The backend of an op: the device of its operands, which must all agree. Float operands
// (undefined ones, e.g. an absent bias, are skipped) share one dtype that the backend computes:
// fp32 on the CPU (the reference), fp32/fp16/bf16 on CUDA (fp32 accumulation). Index operands
// (ids, positions, block tables, ...) are int32.
Device Backend(const char* op, std::initializer_list<const Tensor*> floats,
               std::initializer_list<const Tensor*> ints = {}) {
  const Tensor& first = **floats.begin();
  const Device device = first.device();
  const DType dtype = first.dtype();
  if (device == Device::kCpu) {
    Expect(dtype == DType::kF32, op, "CPU ops take fp32 tensors");
  } else {
    Expect(dtype == DType::kF32 || dtype == DType::kF16 || dtype == DType::kBF16, op,
           "CUDA ops take fp32, fp16 or bf16 tensors");
  }
  for (const Tensor* t : floats) {
    if (!t->defined()) continue;
    Expect(t->device() == device, op, "operands on different devices");
    Expect(t->dtype() == dtype, op, "operands of different dtypes");
  }
  for (const Tensor* t : ints) {
    Expect(t->dtype() == DType::kI32, op, "index operands must be int32");
    Expect(t->device() == device, op, "index operands must be on the op's device");
  }
  return device;
}

// True when the two tensors' bytes overlap (views of one buffer, or the same tensor).
bool Overlap(const Tensor& a, const Tensor& b) {
  if (!a.defined() || !b.defined() || a.device() != b.device()) return false;
  const auto pa = reinterpret_cast<uintptr_t>(a.raw()), pb = reinterpret_cast<uintptr_t>(b.raw());
  return pa < pb + b.nbytes() && pb < pa + a.nbytes();
}

// CHAI_CUDA_CALL: the CUDA implementation, or a clear failure in a build without one. CHAI_DISPATCH:
// the same arguments to the backend of `device`.
#ifdef CHAI_WITH_CUDA
#define CHAI_CUDA_CALL(op, ...) cuda::op(__VA_ARGS__)
#else
#define CHAI_CUDA_CALL(op, ...) NoCuda(#op)
[[noreturn]] void NoCuda(const char* op) { Fail(op, "this build has no CUDA backend"); }
#endif
#define CHAI_DISPATCH(device, op, ...) \
  ((device) == Device::kCpu ? cpu::op(__VA_ARGS__) : CHAI_CUDA_CALL(op, __VA_ARGS__))

}  // namespace

void LayerNorm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps, Tensor* out) {
  Expect(x.rank() == 2 && weight.numel() == x.dim(1) && out->shape() == x.shape(), "LayerNorm", "shape");
  CHAI_DISPATCH(Backend("LayerNorm", {&x, &weight, &bias, out}), LayerNorm, x, weight, bias, eps, out);
}

void RmsNorm(const Tensor& x, const Tensor& weight, float eps, Tensor* out) {
  Expect(x.rank() == 2 && weight.numel() == x.dim(1) && out->shape() == x.shape(), "RmsNorm", "shape");
  CHAI_DISPATCH(Backend("RmsNorm", {&x, &weight, out}), RmsNorm, x, weight, eps, out);
}

void AddLayerNorm(Tensor* x, const Tensor& y, const Tensor& weight, const Tensor& bias, float eps, Tensor* out,
                  const L2Prefetch& then) {
  Expect(x->rank() == 2 && y.shape() == x->shape() && weight.numel() == x->dim(1) && out->shape() == x->shape() &&
             (!bias.defined() || bias.numel() == x->dim(1)),
         "AddLayerNorm", "shape");
  if (Backend("AddLayerNorm", {x, &y, &weight, &bias, out}) == Device::kCpu) {
    cpu::AddLayerNorm(x, y, weight, bias, eps, out);  // the prefetch hint means nothing here
    return;
  }
  CHAI_CUDA_CALL(AddLayerNorm, x, y, weight, bias, eps, out, then);
}

void AddRmsNorm(Tensor* x, const Tensor& y, const Tensor& weight, float eps, Tensor* out, const L2Prefetch& then) {
  Expect(x->rank() == 2 && y.shape() == x->shape() && weight.numel() == x->dim(1) && out->shape() == x->shape(),
         "AddRmsNorm", "shape");
  if (Backend("AddRmsNorm", {x, &y, &weight, out}) == Device::kCpu) {
    cpu::AddRmsNorm(x, y, weight, eps, out);
    return;
  }
  CHAI_CUDA_CALL(AddRmsNorm, x, y, weight, eps, out, then);
}

void Linear(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor* out) {
  Expect(x.rank() == 2 && weight.rank() == 2 && weight.dim(1) == x.dim(1), "Linear", "x/weight shape");
  Expect(out->rank() == 2 && out->dim(0) == x.dim(0) && out->dim(1) == weight.dim(0), "Linear", "out shape");
  Expect(!bias.defined() || bias.numel() == weight.dim(0), "Linear", "bias shape");
  CHAI_DISPATCH(Backend("Linear", {&x, &weight, &bias, out}), Linear, x, weight, bias, out);
}

void LinearFused(const Tensor& x, const Tensor& weight, const Tensor& bias, const LinearFusion& fusion, Tensor* out) {
  const char* op = "LinearFused";
  Expect(x.rank() == 2 && weight.rank() == 2 && weight.dim(1) == x.dim(1), op, "x/weight shape");
  Expect(!bias.defined() || bias.numel() == weight.dim(0), op, "bias shape");
  const Tensor& norm_w = fusion.rms_norm_weight;
  Expect(!norm_w.defined() || norm_w.numel() == x.dim(1), op, "norm weight shape");
  const bool silu = fusion.output == LinearOutput::kSiluMul;
  Expect(!silu || weight.dim(0) % 2 == 0, op, "SiLU of an odd number of gate | up rows");
  Expect(out->rank() == 2 && out->dim(0) == x.dim(0) && out->dim(1) == (silu ? weight.dim(0) / 2 : weight.dim(0)), op,
         "out shape");
  Expect(!Overlap(x, *out), op, "out overlaps x");
  Expect(fusion.mirror == nullptr || (fusion.output == LinearOutput::kStore && !norm_w.defined() &&
                                      LinearMirrorIsOneKernel(x, weight)),
         op, "a mirror needs a plain store on CUDA's decode GEMV");
  CHAI_DISPATCH(Backend(op, {&x, &weight, &bias, &norm_w, out}), LinearFused, x, weight, bias, fusion, out);
}

bool LinearFusedIsOneKernel(const Tensor& x) {
#ifdef CHAI_WITH_CUDA
  return x.device() == Device::kCuda && cuda::LinearFusedIsOneKernel(x);
#else
  return false;
#endif
}

bool LinearMirrorIsOneKernel(const Tensor& x, const Tensor& weight) {
#ifdef CHAI_WITH_CUDA
  return x.device() == Device::kCuda && cuda::LinearMirrorIsOneKernel(x, weight);
#else
  (void)weight;
  return false;
#endif
}

L2Prefetch LinearReadsFirst(const Tensor& x, const Tensor& weight, LinearOutput output, int64_t budget,
                            L2HintForm one_wave) {
#ifdef CHAI_WITH_CUDA
  if (x.device() == Device::kCuda && weight.device() == Device::kCuda) {
    return cuda::GemvReadsFirst(x, weight, output, budget, one_wave);
  }
#endif
  (void)one_wave;
  return L2Prefetch{};
}

void Relu(Tensor* x) { CHAI_DISPATCH(Backend("Relu", {x}), Relu, x); }

void SiluMul(const Tensor& gate, const Tensor& up, Tensor* out) {
  Expect(gate.shape() == up.shape() && out->shape() == gate.shape(), "SiluMul", "shape");
  CHAI_DISPATCH(Backend("SiluMul", {&gate, &up, out}), SiluMul, gate, up, out);
}

void SiluMulFused(const Tensor& gate_up, Tensor* out) {
  Expect(gate_up.rank() == 2 && out->rank() == 2 && out->dim(0) == gate_up.dim(0) && gate_up.dim(1) == 2 * out->dim(1),
         "SiluMulFused", "shape");
  CHAI_DISPATCH(Backend("SiluMulFused", {&gate_up, out}), SiluMulFused, gate_up, out);
}

void Add(const Tensor& a, const Tensor& b, Tensor* out) {
  Expect(a.numel() == b.numel() && out->numel() == a.numel(), "Add", "shape");
  CHAI_DISPATCH(Backend("Add", {&a, &b, out}), Add, a, b, out);
}

void Embedding(const Tensor& table, const Tensor& ids, int64_t row_begin, Tensor* out) {
  Expect(ids.dtype() == DType::kI32 && ids.device() == table.device(), "Embedding",
         "ids must be int32 on the table's device");
  Expect(table.rank() == 2 && out->rank() == 2 && out->dim(0) == ids.numel() && out->dim(1) == table.dim(1),
         "Embedding", "shape");
  CHAI_DISPATCH(Backend("Embedding", {&table, out}, {&ids}), Embedding, table, ids, row_begin, out);
}

void Rotary(Tensor* x, const Tensor& positions, int num_heads, int head_dim, float theta) {
  Expect(positions.dtype() == DType::kI32 && positions.device() == x->device(), "Rotary",
         "positions must be int32 on x's device");
  Expect(x->rank() == 2 && x->dim(0) == positions.numel() && x->dim(1) == static_cast<int64_t>(num_heads) * head_dim &&
             head_dim % 2 == 0,
         "Rotary", "shape");
  CHAI_DISPATCH(Backend("Rotary", {x}, {&positions}), Rotary, x, positions, num_heads, head_dim, theta);
}

void SplitQkvRotary(const Tensor& qkv, const Tensor& positions, int heads, int kv_heads, int head_dim, float theta,
                    bool apply_rotary, Tensor* q, Tensor* k, Tensor* v) {
  const int64_t T = qkv.dim(0), qw = int64_t{heads} * head_dim, kvw = int64_t{kv_heads} * head_dim;
  Expect(qkv.rank() == 2 && qkv.dim(1) == qw + 2 * kvw && heads >= 0 && kv_heads >= 0 && head_dim > 0, "SplitQkvRotary",
         "qkv shape");
  Expect(q->shape() == std::vector<int64_t>{T, qw} && k->shape() == std::vector<int64_t>{T, kvw} &&
             v->shape() == k->shape(),
         "SplitQkvRotary", "q/k/v shape");
  if (!apply_rotary) {
    CHAI_DISPATCH(Backend("SplitQkvRotary", {&qkv, q, k, v}), SplitQkvRotary, qkv, positions, heads, kv_heads, head_dim,
                  theta, false, q, k, v);
    return;
  }
  Expect(head_dim % 2 == 0 && positions.numel() == T, "SplitQkvRotary", "positions shape or odd head_dim");
  CHAI_DISPATCH(Backend("SplitQkvRotary", {&qkv, q, k, v}, {&positions}), SplitQkvRotary, qkv, positions, heads,
                kv_heads, head_dim, theta, true, q, k, v);
}

void SoftmaxRows(Tensor* x) {
  Expect(x->rank() >= 1, "SoftmaxRows", "shape");
  CHAI_DISPATCH(Backend("SoftmaxRows", {x}), SoftmaxRows, x);
}

void ArgmaxRows(const Tensor& x, int64_t cols, Tensor* ids) {
  Expect(x.shape().size() == 2 && cols >= 1 && cols <= x.dim(1) && ids->dtype() == DType::kI32 &&
             ids->numel() == x.dim(0) && ids->device() == x.device() &&
             (x.dtype() == DType::kF32 || x.dtype() == DType::kF16 || x.dtype() == DType::kBF16),
         "ArgmaxRows", "operands");
  if (x.device() == Device::kCpu) {
    std::vector<float> row(static_cast<size_t>(cols));
    const size_t esize = DTypeSize(x.dtype());
    for (int64_t r = 0; r < x.dim(0); ++r) {
      const char* src = static_cast<const char*>(x.raw()) + static_cast<size_t>(r * x.dim(1)) * esize;
      ConvertFloats(src, x.dtype(), row.data(), DType::kF32, row.size());
      ids->data<int32_t>()[r] = ArgmaxFloats(row.data(), cols);
    }
    return;
  }
#ifdef CHAI_WITH_CUDA
  cuda::ArgmaxRows(x, cols, ids);
#else
  Fail("ArgmaxRows", "this build has no CUDA backend");
#endif
}

void ScatterInt32(const Tensor& indices, const Tensor& values, Tensor* dst) {
  Expect(indices.dtype() == DType::kI32 && values.dtype() == DType::kI32 && dst->dtype() == DType::kI32 &&
             indices.numel() == values.numel() && indices.device() == dst->device() &&
             values.device() == dst->device(),
         "ScatterInt32", "operands");
  if (dst->device() == Device::kCpu) {
    for (int64_t i = 0; i < indices.numel(); ++i) dst->data<int32_t>()[indices.data<int32_t>()[i]] = values.data<int32_t>()[i];
    return;
  }
#ifdef CHAI_WITH_CUDA
  cuda::ScatterInt32(indices, values, dst);
#else
  Fail("ScatterInt32", "this build has no CUDA backend");
#endif
}

void PagedAppend(const Tensor& k, const Tensor& v, const PagedKv& kv, const BatchLayout& batch) {
  Expect(k.shape() == v.shape() && k.rank() == 2 && k.dim(1) == int64_t{kv.kv_heads} * kv.pool.dim(2), "PagedAppend",
         "k/v shape");
  Expect(k.dtype() == kv.pool.dtype() && v.dtype() == kv.pool.dtype(), "PagedAppend", "dtype differs from the pool");
  Expect(kv.tables.dtype() == DType::kI32 &&
             kv.tables.numel() % (int64_t{2} * kv.kv_heads * kv.max_blocks) == 0 &&
             (batch.slots.defined() || kv.tables.numel() >= int64_t{batch.num_seqs} * 2 * kv.kv_heads * kv.max_blocks),
         "PagedAppend", "tables shape");
  const Device device = Backend("PagedAppend", {&k, &v, &kv.pool}, {&kv.tables, &batch.q_start, &batch.seq_lens});
  Expect(!batch.slots.defined() || (batch.slots.dtype() == DType::kI32 && batch.slots.device() == device &&
                                    batch.slots.numel() == batch.num_seqs),
         "PagedAppend", "slots must be int32 [num_seqs] on the op's device");
  CHAI_DISPATCH(device, PagedAppend, k, v, kv, batch);
}

void SplitQkvRotaryAppend(const Tensor& qkv, const Tensor& positions, int heads, int kv_heads, int head_dim,
                          float theta, bool apply_rotary, const PagedKv& kv, const BatchLayout& batch, Tensor* q,
                          Tensor* k, Tensor* v) {
  const char* op = "SplitQkvRotaryAppend";
  const int64_t T = qkv.dim(0), qw = int64_t{heads} * head_dim, kvw = int64_t{kv_heads} * head_dim;
  Expect(qkv.rank() == 2 && qkv.dim(1) == qw + 2 * kvw && heads >= 0 && kv_heads >= 0 && head_dim > 0, op,
         "qkv shape");
  Expect(q->shape() == std::vector<int64_t>{T, qw}, op, "q shape");
  for (const Tensor* t : {k, v}) Expect(t == nullptr || t->shape() == std::vector<int64_t>{T, kvw}, op, "k/v shape");
  Expect(!apply_rotary || (head_dim % 2 == 0 && positions.numel() == T), op, "positions shape or odd head_dim");
  Expect(kv.pool.rank() == 3 && kv.pool.dim(2) == head_dim && kv.kv_heads == kv_heads, op,
         "pool head size or kv heads differ from the split's");
  Expect(kv.tables.dtype() == DType::kI32 &&
             kv.tables.numel() % (int64_t{2} * kv.kv_heads * kv.max_blocks) == 0 &&
             (batch.slots.defined() || kv.tables.numel() >= int64_t{batch.num_seqs} * 2 * kv.kv_heads * kv.max_blocks),
         op, "tables shape");
  Expect(batch.q_start.numel() >= int64_t{batch.num_seqs} + 1 && batch.seq_lens.numel() >= batch.num_seqs, op,
         "batch layout shape");
  const Tensor none;
  const Device device = Backend(op, {&qkv, &kv.pool, q, k != nullptr ? k : &none, v != nullptr ? v : &none},
                                {&kv.tables, &batch.q_start, &batch.seq_lens});
  Expect(!apply_rotary || (positions.dtype() == DType::kI32 && positions.device() == device), op,
         "positions must be int32 on the op's device");
  Expect(!batch.slots.defined() || (batch.slots.dtype() == DType::kI32 && batch.slots.device() == device &&
                                    batch.slots.numel() == batch.num_seqs),
         op, "slots must be int32 [num_seqs] on the op's device");
  CHAI_DISPATCH(device, SplitQkvRotaryAppend, qkv, positions, heads, kv_heads, head_dim, theta, apply_rotary, kv, batch,
                q, k, v);
}

void QkvLinearAppend(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& positions, int heads,
                     int kv_heads, int head_dim, float theta, bool apply_rotary, const PagedKv& kv,
                     const BatchLayout& batch, Tensor* q, const Tensor& rms_norm_weight, float rms_norm_eps,
                     bool first_bytes_in_l2) {
  const char* op = "QkvLinearAppend";
  const int64_t T = x.dim(0), width = (int64_t{heads} + 2 * kv_heads) * head_dim;
  Expect(x.rank() == 2 && weight.rank() == 2 && weight.dim(0) == width && weight.dim(1) == x.dim(1), op,
         "x/weight shape");
  Expect(!rms_norm_weight.defined() || rms_norm_weight.numel() == x.dim(1), op, "norm weight shape");
#ifdef CHAI_WITH_CUDA
  if (x.device() == Device::kCuda &&
      cuda::QkvLinearAppendIsOneKernel(x, weight, bias, head_dim, positions, batch, rms_norm_weight)) {
    // The composition's checks (SplitQkvRotaryAppend's) on its operands, then the one kernel.
    Expect(q->shape() == std::vector<int64_t>{T, int64_t{heads} * head_dim}, op, "q shape");
    Expect(kv.pool.rank() == 3 && kv.pool.dim(2) == head_dim && kv.kv_heads == kv_heads && kv.pool.dtype() == x.dtype(),
           op, "pool head size, kv heads or dtype differ from the projection's");
    Expect(kv.tables.dtype() == DType::kI32 && batch.token_rows.numel() == T && positions.numel() == T, op,
           "tables, token rows or positions shape");
    Backend(op, {&x, &weight, &bias, &rms_norm_weight, &kv.pool, q}, {&kv.tables, &positions, &batch.token_rows});
    cuda::QkvLinearAppend(x, weight, bias, positions, heads, kv_heads, head_dim, theta, apply_rotary, kv, batch, q,
                          rms_norm_weight, rms_norm_eps, first_bytes_in_l2);
    return;
  }
#endif
  Tensor qkv = Tensor::Empty({T, width}, x.dtype(), x.device());
  if (rms_norm_weight.defined()) {
    LinearFused(x, weight, bias,
                LinearFusion{rms_norm_weight, rms_norm_eps, LinearOutput::kStore, nullptr, first_bytes_in_l2}, &qkv);
  } else {
    Linear(x, weight, bias, &qkv);
  }
  SplitQkvRotaryAppend(qkv, positions, heads, kv_heads, head_dim, theta, apply_rotary, kv, batch, q, nullptr, nullptr);
}

void PagedAttention(const Tensor& q, const PagedKv& kv, const BatchLayout& batch, const Tensor& score_head,
                    Tensor* out) {
  const int64_t d = kv.pool.dim(2);
  Expect(q.rank() == 2 && q.dim(1) % d == 0 && out->shape() == q.shape(), "PagedAttention", "q/out shape");
  const int64_t heads = q.dim(1) / d;
  Expect(heads % kv.kv_heads == 0, "PagedAttention", "heads not a multiple of kv heads");
  Expect(score_head.dtype() == DType::kI32 && score_head.numel() % heads == 0 &&
             (batch.slots.defined() || score_head.numel() >= batch.num_seqs * heads), "PagedAttention",
         "score_head shape");
  Expect(q.dtype() == kv.pool.dtype(), "PagedAttention", "dtype differs from the pool");
  const Device device =
      Backend("PagedAttention", {&q, &kv.pool, out}, {&score_head, &kv.tables, &batch.q_start, &batch.seq_lens});
  Expect(!batch.slots.defined() || (batch.slots.dtype() == DType::kI32 && batch.slots.device() == device &&
                                    batch.slots.numel() == batch.num_seqs),
         "PagedAttention", "slots must be int32 [num_seqs] on the op's device");
  CHAI_DISPATCH(device, PagedAttention, q, kv, batch, score_head, out);
}

static_assert(kChaiClusterMaxHeads == cluster_math::kMaxHeads);

void ChaiCluster(absl::Span<const ChaiClusterProblem> problems, const PagedKv& kv, const Tensor& order,
                 Tensor* score_head, Tensor* features) {
  const char* op = "ChaiCluster";
  Expect(kv.pool.rank() == 3 && kv.block_size >= cluster_math::kTokens && kv.kv_heads > 0 && kv.max_blocks > 0, op,
         "cache view");
  Expect(score_head->rank() == 2 && order.rank() == 2 && order.dim(1) == score_head->dim(1), op, "map/order shape");
  const int64_t heads = score_head->dim(1), d = kv.pool.dim(2);
  Expect(heads >= 1 && heads <= cluster_math::kMaxHeads && heads % kv.kv_heads == 0, op,
         "heads must be 1..128 and a multiple of kv heads");
  Expect(kv.tables.dtype() == DType::kI32 && kv.tables.numel() % (int64_t{2} * kv.kv_heads * kv.max_blocks) == 0, op,
         "tables shape");
  const Device device = Backend(op, {&kv.pool}, {&kv.tables, &order, score_head});
  const int64_t table_rows = kv.tables.numel() / (int64_t{2} * kv.kv_heads * kv.max_blocks);
  std::vector<int> map_rows;
  for (const ChaiClusterProblem& p : problems) {
    const int64_t saved = p.saved_q.defined() ? p.saved_q.dim(0) : 0;
    Expect(saved < cluster_math::kTokens && p.new_q.defined() && p.new_q.rank() == 2 &&
               p.new_q.dim(0) >= cluster_math::kTokens - saved && p.new_q.dim(1) == heads * d,
           op, "query rows");
    Expect(!p.saved_q.defined() || (p.saved_q.rank() == 2 && p.saved_q.dim(1) == heads * d), op, "saved query rows");
    for (const Tensor* q : {&p.saved_q, &p.new_q}) {
      Expect(!q->defined() || (q->device() == device && q->dtype() == kv.pool.dtype()), op,
             "queries must share the pool's device and dtype");
    }
    Expect(p.table_row >= 0 && p.table_row < table_rows && p.map_row >= 0 && p.map_row < score_head->dim(0) &&
               p.order_row >= 0 && p.order_row < order.dim(0),
           op, "row out of range");
    Expect(p.clusters >= 1 && p.clusters <= heads, op, "clusters must be in [1, heads]");
    map_rows.push_back(p.map_row);
  }
  std::sort(map_rows.begin(), map_rows.end());
  Expect(std::adjacent_find(map_rows.begin(), map_rows.end()) == map_rows.end(), op, "map rows must be distinct");
  Expect(features == nullptr ||
             (features->dtype() == DType::kF32 && features->device() == device &&
              features->numel() == static_cast<int64_t>(problems.size()) * heads * cluster_math::kFeatures),
         op, "features must be fp32 [problems, heads, 25] on the op's device");
  if (problems.empty()) return;
  CHAI_DISPATCH(device, ChaiCluster, problems, kv, order, score_head, features);
}

}  // namespace chai::ops
