// CHAI clustering features: each head's attention pattern over the first 5 tokens.
//
// Exact semantics (DESIGN.md, equal to the authors' release): for head h,
//   P_h[i][j] = softmax_j(q_i . k_j / sqrt(d)),  i, j in 0..4, no causal mask,
// flattened row-major to 25 values. Under GQA, query head h reads KV head
// h / (num_heads / num_kv_heads) (the Hugging Face repeat_kv grouping).
#ifndef CHAI_RUNTIME_CHAI_FEATURES_H_
#define CHAI_RUNTIME_CHAI_FEATURES_H_

#include <vector>

namespace chai {

inline constexpr int kChaiFeatureTokens = 5;
inline constexpr int kChaiFeatureSize = kChaiFeatureTokens * kChaiFeatureTokens;

// q: kChaiFeatureTokens rows, row i at q + i * q_stride, holding num_heads * head_dim floats
// (head h at offset h * head_dim). k: same with num_kv_heads heads and k_stride.
// Returns [num_heads][kChaiFeatureSize].
//
// Precision: dot products, scaling, max-subtraction, exp and normalisation are done in double
// (products of floats are exact in double) and each probability is rounded once to float, so
// the result is within one fp32 rounding of the exact softmax (double error is ~1e-15) and does
// not depend on head_dim's size or on summation order in any practical sense. The authors compute
// q.k in the model dtype and the softmax in fp32; fp16/bf16 q and k are converted to fp32 by the
// caller before this function. Requires num_heads % num_kv_heads == 0 and strides >= the row width
// (programmer errors abort).
std::vector<float> AttentionFeatures(const float* q, const float* k, int num_heads,
                                     int num_kv_heads, int head_dim, int q_stride, int k_stride);

}  // namespace chai

#endif  // CHAI_RUNTIME_CHAI_FEATURES_H_
