// The fused ops of the decode path (stacked Q | K | V and gate | up projections, residual add
// + norm, Linear with its norm and residual add or SiLU), defined as the compositions of the
// unfused reference ops they replace, so that the engine's CPU results do not change when it uses
// them.
#include <cmath>
#include <cstring>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/parallel_for.h"

namespace chai::cpu {

void AddLayerNorm(Tensor* x, const Tensor& y, const Tensor& weight, const Tensor& bias, float eps, Tensor* out) {
  Add(*x, y, x);
  LayerNorm(*x, weight, bias, eps, out);  // out may alias x: each element is read before it is written
}

void AddRmsNorm(Tensor* x, const Tensor& y, const Tensor& weight, float eps, Tensor* out) {
  Add(*x, y, x);
  RmsNorm(*x, weight, eps, out);
}

void LinearFused(const Tensor& x, const Tensor& weight, const Tensor& bias, const ops::LinearFusion& fusion,
                 Tensor* out) {
  Tensor in = x;
  if (fusion.rms_norm_weight.defined()) {
    in = Tensor::Empty(x.shape(), DType::kF32);
    RmsNorm(x, fusion.rms_norm_weight, fusion.rms_norm_eps, &in);
  }
  if (fusion.output == ops::LinearOutput::kStore || fusion.output == ops::LinearOutput::kRelu) {
    Linear(in, weight, bias, out);
    if (fusion.output == ops::LinearOutput::kRelu) Relu(out);
    return;
  }
  Tensor p = Tensor::Empty({x.dim(0), weight.dim(0)}, DType::kF32);
  Linear(in, weight, bias, &p);
  if (fusion.output == ops::LinearOutput::kAddTo) {
    Add(*out, p, out);
  } else {
    SiluMulFused(p, out);
  }
}

void SiluMulFused(const Tensor& gate_up, Tensor* out) {
  const int64_t rows = out->dim(0), f = out->dim(1);
  const float* gu = gate_up.data<float>();
  float* o = out->data<float>();
  ParallelFor(rows * f, 4096, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t r = i / f, c = i % f;
      const float g = gu[r * 2 * f + c], u = gu[r * 2 * f + f + c];
      o[i] = g / (1.f + std::exp(-g)) * u;  // SiluMul's expression
    }
  });
}

void SplitQkvRotary(const Tensor& qkv, const Tensor& positions, int heads, int kv_heads, int head_dim, float theta,
                    bool apply_rotary, Tensor* q, Tensor* k, Tensor* v) {
  const int64_t rows = qkv.dim(0), qw = int64_t{heads} * head_dim, kvw = int64_t{kv_heads} * head_dim;
  const float* in = qkv.data<float>();
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = in + r * (qw + 2 * kvw);
    std::memcpy(q->data<float>() + r * qw, row, qw * sizeof(float));
    std::memcpy(k->data<float>() + r * kvw, row + qw, kvw * sizeof(float));
    std::memcpy(v->data<float>() + r * kvw, row + qw + kvw, kvw * sizeof(float));
  }
  if (apply_rotary) {
    Rotary(q, positions, heads, head_dim, theta);
    Rotary(k, positions, kv_heads, head_dim, theta);
  }
}

void SplitQkvRotaryAppend(const Tensor& qkv, const Tensor& positions, int heads, int kv_heads, int head_dim,
                          float theta, bool apply_rotary, const PagedKv& kv, const BatchLayout& batch, Tensor* q,
                          Tensor* k, Tensor* v) {
  // Rows the caller does not keep go through scratch tensors: the composition is the reference.
  const int64_t rows = qkv.dim(0), kvw = int64_t{kv_heads} * head_dim;
  Tensor k_tmp = k != nullptr ? *k : Tensor::Empty({rows, kvw}, DType::kF32);
  Tensor v_tmp = v != nullptr ? *v : Tensor::Empty({rows, kvw}, DType::kF32);
  SplitQkvRotary(qkv, positions, heads, kv_heads, head_dim, theta, apply_rotary, q, &k_tmp, &v_tmp);
  PagedAppend(k_tmp, v_tmp, kv, batch);
}

}  // namespace chai::cpu
