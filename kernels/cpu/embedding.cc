// Token embedding lookup; rows outside this rank's vocabulary slice are zero so that the sum
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

}  // namespace chai::cpu
