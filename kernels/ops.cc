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

void Embedding(const Tensor& table, absl::Span<const int32_t> ids, int64_t row_begin, Tensor* out) {
  Expect(table.rank() == 2 && out->rank() == 2 && out->dim(0) == static_cast<int64_t>(ids.size()) &&
             out->dim(1) == table.dim(1),
         "Embedding", "shape");
  if (OnCpu(table, "Embedding")) cpu::Embedding(table, ids, row_begin, out);
}

void Rotary(Tensor* x, absl::Span<const int32_t> positions, int num_heads, int head_dim, float theta) {
  Expect(x->rank() == 2 && x->dim(0) == static_cast<int64_t>(positions.size()) &&
             x->dim(1) == static_cast<int64_t>(num_heads) * head_dim && head_dim % 2 == 0,
         "Rotary", "shape");
  if (OnCpu(*x, "Rotary")) cpu::Rotary(x, positions, num_heads, head_dim, theta);
}

void SoftmaxRows(Tensor* x) {
  if (OnCpu(*x, "SoftmaxRows")) cpu::SoftmaxRows(x);
}

void AppendHeads(const Tensor& x, absl::Span<Tensor> heads, int64_t start) {
  Expect(x.rank() == 2 && !heads.empty() && x.dim(1) % heads.size() == 0, "AppendHeads", "shape");
  const int64_t d = x.dim(1) / heads.size();
  for (const Tensor& h : heads) {
    Expect(!h.defined() || (h.dim(1) == d && h.dim(0) >= start + x.dim(0) && h.dtype() == x.dtype()),
           "AppendHeads", "head buffer too small");
  }
  if (OnCpu(x, "AppendHeads")) cpu::AppendHeads(x, heads, start);
}

void Attention(const Tensor& q, absl::Span<const Tensor> k_heads, absl::Span<const Tensor> v_heads,
               int64_t past_len, absl::Span<const int> score_head, Tensor* out) {
  const int heads = static_cast<int>(score_head.size());
  Expect(!v_heads.empty() && heads % v_heads.size() == 0 && k_heads.size() == v_heads.size(),
         "Attention", "head counts");
  Expect(q.rank() == 2 && q.dim(1) % heads == 0 && out->shape() == q.shape(), "Attention", "q/out shape");
  const int64_t d = q.dim(1) / heads, needed = past_len + q.dim(0);
  const int group = heads / static_cast<int>(v_heads.size());
  for (int h = 0; h < heads; ++h) {
    const int s = score_head[h];
    Expect(s >= 0 && s < heads && score_head[s] == s, "Attention", "score_head must map to self-mapped heads");
    const Tensor& k = k_heads[s / group];
    const Tensor& v = v_heads[h / group];
    Expect(k.defined() && k.dim(0) >= needed && k.dim(1) == d, "Attention", "missing or short K head");
    Expect(v.defined() && v.dim(0) >= needed && v.dim(1) == d, "Attention", "missing or short V head");
  }
  if (OnCpu(q, "Attention")) cpu::Attention(q, k_heads, v_heads, past_len, score_head, out);
}

}  // namespace chai::ops
