// CPU reference implementations of kernels/ops.h (fp32). Called through the dispatcher in
// kernels/ops.cc, which has already checked shapes, dtypes and devices.
#ifndef CHAI_KERNELS_CPU_CPU_OPS_H_
#define CHAI_KERNELS_CPU_CPU_OPS_H_

#include <vector>

#include "kernels/ops.h"

namespace chai::cpu {

void LayerNorm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps, Tensor* out);
void RmsNorm(const Tensor& x, const Tensor& weight, float eps, Tensor* out);
void AddLayerNorm(Tensor* x, const Tensor& y, const Tensor& weight, const Tensor& bias, float eps, Tensor* out);
void AddRmsNorm(Tensor* x, const Tensor& y, const Tensor& weight, float eps, Tensor* out);
void Linear(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor* out);
void LinearFused(const Tensor& x, const Tensor& weight, const Tensor& bias, const ops::LinearFusion& fusion,
                 Tensor* out);
void Relu(Tensor* x);
void SiluMul(const Tensor& gate, const Tensor& up, Tensor* out);
void SiluMulFused(const Tensor& gate_up, Tensor* out);
void Add(const Tensor& a, const Tensor& b, Tensor* out);
void Embedding(const Tensor& table, const Tensor& ids, int64_t row_begin, Tensor* out);
void Rotary(Tensor* x, const Tensor& positions, int num_heads, int head_dim, float theta);
void SplitQkvRotary(const Tensor& qkv, const Tensor& positions, int heads, int kv_heads, int head_dim, float theta,
                    bool apply_rotary, Tensor* q, Tensor* k, Tensor* v);
void SoftmaxRows(Tensor* x);

// Dot product with a vectorisable reduction (the order differs from a naive loop; fine at fp32).
void PagedAppend(const Tensor& k, const Tensor& v, const PagedKv& kv, const BatchLayout& batch);
void SplitQkvRotaryAppend(const Tensor& qkv, const Tensor& positions, int heads, int kv_heads, int head_dim,
                          float theta, bool apply_rotary, const PagedKv& kv, const BatchLayout& batch, Tensor* q,
                          Tensor* k, Tensor* v);
void PagedAttention(const Tensor& q, const PagedKv& kv, const BatchLayout& batch, const Tensor& score_head,
                    Tensor* out);

void ChaiCluster(absl::Span<const ops::ChaiClusterProblem> problems, const PagedKv& kv, const Tensor& order,
                 Tensor* score_head, Tensor* features);
// The clustering steps of ChaiCluster on their own: average linkage over the n x n distances
// (finite, symmetric) cut at k clusters; for each item, the lowest item of its cluster. For tests
// on tie-heavy distance matrices.
std::vector<int> AverageLinkageRoots(std::vector<double> dist, int n, int k);

float Dot(const float* a, const float* b, int64_t n);

}  // namespace chai::cpu

#endif  // CHAI_KERNELS_CPU_CPU_OPS_H_
