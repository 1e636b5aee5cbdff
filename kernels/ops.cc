// Shape/device checks and dispatch to the backend implementations.
#include "kernels/ops.h"

#include <cstdio>
#include <cstdlib>

#include "kernels/cpu/cpu_ops.h"

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

// The CPU backend computes in fp32; the CUDA backend arrives with its own dispatch.
bool OnCpu(const Tensor& t, const char* op) {
  if (t.device() == Device::kCpu) {
    Expect(t.dtype() == DType::kF32, op, "CPU ops take fp32 tensors");
    return true;
  }
  Fail(op, "no CUDA implementation in this build");
}

}  // namespace

void LayerNorm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps, Tensor* out) {
  Expect(x.rank() == 2 && weight.numel() == x.dim(1) && out->shape() == x.shape(), "LayerNorm", "shape");
  if (OnCpu(x, "LayerNorm")) cpu::LayerNorm(x, weight, bias, eps, out);
}

void RmsNorm(const Tensor& x, const Tensor& weight, float eps, Tensor* out) {
  Expect(x.rank() == 2 && weight.numel() == x.dim(1) && out->shape() == x.shape(), "RmsNorm", "shape");
  if (OnCpu(x, "RmsNorm")) cpu::RmsNorm(x, weight, eps, out);
}

void Linear(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor* out) {
  Expect(x.rank() == 2 && weight.rank() == 2 && weight.dim(1) == x.dim(1), "Linear", "x/weight shape");
  Expect(out->rank() == 2 && out->dim(0) == x.dim(0) && out->dim(1) == weight.dim(0), "Linear", "out shape");
  Expect(!bias.defined() || bias.numel() == weight.dim(0), "Linear", "bias shape");
  if (OnCpu(x, "Linear")) cpu::Linear(x, weight, bias, out);
}

void Relu(Tensor* x) {
  if (OnCpu(*x, "Relu")) cpu::Relu(x);
}

void SiluMul(const Tensor& gate, const Tensor& up, Tensor* out) {
  Expect(gate.shape() == up.shape() && out->shape() == gate.shape(), "SiluMul", "shape");
  if (OnCpu(gate, "SiluMul")) cpu::SiluMul(gate, up, out);
}

void Add(const Tensor& a, const Tensor& b, Tensor* out) {
  Expect(a.numel() == b.numel() && out->numel() == a.numel(), "Add", "shape");
  if (OnCpu(a, "Add")) cpu::Add(a, b, out);
}

void Embedding(const Tensor& table, const Tensor& ids, int64_t row_begin, Tensor* out) {
  Expect(ids.dtype() == DType::kI32 && ids.device() == table.device(), "Embedding", "ids must be int32 on the table's device");
  Expect(table.rank() == 2 && out->rank() == 2 && out->dim(0) == ids.numel() &&
             out->dim(1) == table.dim(1),
         "Embedding", "shape");
  if (OnCpu(table, "Embedding")) cpu::Embedding(table, ids, row_begin, out);
}

void Rotary(Tensor* x, const Tensor& positions, int num_heads, int head_dim, float theta) {
  Expect(positions.dtype() == DType::kI32 && positions.device() == x->device(), "Rotary", "positions must be int32 on x's device");
  Expect(x->rank() == 2 && x->dim(0) == positions.numel() &&
             x->dim(1) == static_cast<int64_t>(num_heads) * head_dim && head_dim % 2 == 0,
         "Rotary", "shape");
  if (OnCpu(*x, "Rotary")) cpu::Rotary(x, positions, num_heads, head_dim, theta);
}

void SoftmaxRows(Tensor* x) {
  if (OnCpu(*x, "SoftmaxRows")) cpu::SoftmaxRows(x);
}

void PagedAppend(const Tensor& k, const Tensor& v, const PagedKv& kv, const BatchLayout& batch) {
  Expect(k.shape() == v.shape() && k.rank() == 2 && k.dim(1) == int64_t{kv.kv_heads} * kv.pool.dim(2),
         "PagedAppend", "k/v shape");
  Expect(k.dtype() == kv.pool.dtype() && v.dtype() == kv.pool.dtype(), "PagedAppend", "dtype differs from the pool");
  Expect(kv.tables.dtype() == DType::kI32 && kv.tables.numel() == int64_t{batch.num_seqs} * 2 * kv.kv_heads * kv.max_blocks,
         "PagedAppend", "tables shape");
  if (OnCpu(k, "PagedAppend")) cpu::PagedAppend(k, v, kv, batch);
}

void PagedAttention(const Tensor& q, const PagedKv& kv, const BatchLayout& batch, const Tensor& score_head,
                    Tensor* out) {
  const int64_t d = kv.pool.dim(2);
  Expect(q.rank() == 2 && q.dim(1) % d == 0 && out->shape() == q.shape(), "PagedAttention", "q/out shape");
  const int64_t heads = q.dim(1) / d;
  Expect(heads % kv.kv_heads == 0, "PagedAttention", "heads not a multiple of kv heads");
  Expect(score_head.dtype() == DType::kI32 && score_head.numel() == batch.num_seqs * heads, "PagedAttention",
         "score_head shape");
  Expect(q.dtype() == kv.pool.dtype(), "PagedAttention", "dtype differs from the pool");
  if (OnCpu(q, "PagedAttention")) cpu::PagedAttention(q, kv, batch, score_head, out);
}

}  // namespace chai::ops
