// Row copies: token embedding lookup and scattering K/V rows into per-head cache buffers.
//
// Embedding: rows outside this rank's vocabulary slice are zero so that the sum
// over ranks (all-reduce) reassembles the full lookup.
#include <cstring>

#include "kernels/cpu/cpu_ops.h"

namespace chai::cpu {

void Embedding(const Tensor& table, const Tensor& ids, int64_t row_begin, Tensor* out) {
  const int64_t rows = table.dim(0), cols = table.dim(1);
  for (int64_t t = 0; t < ids.numel(); ++t) {
    float* o = out->data<float>() + t * cols;
    const int64_t r = ids.data<int32_t>()[t] - row_begin;
    if (r >= 0 && r < rows) {
      std::memcpy(o, table.data<float>() + r * cols, cols * sizeof(float));
    } else {
      std::memset(o, 0, cols * sizeof(float));
    }
  }
}

void AppendHeads(const Tensor& x, absl::Span<Tensor> heads, int64_t start) {
  const int64_t tokens = x.dim(0), width = x.dim(1), d = width / heads.size();
  for (size_t g = 0; g < heads.size(); ++g) {
    if (!heads[g].defined()) continue;
    for (int64_t t = 0; t < tokens; ++t) {
      std::memcpy(heads[g].data<float>() + (start + t) * d, x.data<float>() + t * width + g * d, d * sizeof(float));
    }
  }
}

}  // namespace chai::cpu
