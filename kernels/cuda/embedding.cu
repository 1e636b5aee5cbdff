// Token embedding lookup: out[t] = table[ids[t] - row_begin], or zeros when that row belongs
// to another rank's vocabulary slice (the all-reduce over ranks then assembles the lookup).
// Blocks are (token, column chunk); 16-byte copies when the rows allow.
#include <algorithm>

#include "kernels/cuda/cuda_utils.cuh"
#include "kernels/cuda/pdl.cuh"

namespace chai::cuda {
namespace {

template <typename T, int N>
__global__ void EmbeddingKernel(const T* table, const int32_t* ids, int64_t row_begin, int64_t rows, int64_t cols,
                                T* out) {
  PdlWait();
  const int64_t t = blockIdx.y;
  const int64_t r = int64_t{ids[t]} - row_begin;
  const bool held = r >= 0 && r < rows;
  const int64_t vecs = cols / N;
  const T* src = table + (held ? r : 0) * cols;
  T* dst = out + t * cols;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < vecs; i += int64_t{gridDim.x} * blockDim.x) {
    Vec<T, N> v;
    if (held) {
      v = LoadVec<T, N>(src + i * N);
    } else {
#pragma unroll
      for (int j = 0; j < N; ++j) v.v[j] = FromFloat<T>(0.f);
    }
    StoreVec<T, N>(dst + i * N, v);
  }
}

}  // namespace

void Embedding(const Tensor& table, const Tensor& ids, int64_t row_begin, Tensor* out) {
  const int64_t tokens = ids.numel(), rows = table.dim(0), cols = table.dim(1);
  if (tokens == 0 || cols == 0) return;
  DispatchFloat(table.dtype(), "Embedding", [&](auto tag) {
    using T = decltype(tag);
    constexpr int kN = kVec16<T>;
    const bool wide = cols % kN == 0 && Aligned(16, {table.raw(), out->raw()});
    const int64_t vecs = wide ? cols / kN : cols;
    constexpr int kThreads = 128;
    const unsigned chunks = static_cast<unsigned>(std::min<int64_t>((vecs + kThreads - 1) / kThreads, 64));
    // gridDim.y is limited to 65535 tokens per launch.
    for (int64_t t0 = 0; t0 < tokens; t0 += 65535) {
      const unsigned n = static_cast<unsigned>(std::min<int64_t>(65535, tokens - t0));
      const dim3 grid(chunks, n);
      const int32_t* id = ids.data<int32_t>() + t0;
      T* o = out->data<T>() + t0 * cols;
      if (wide) {
        LaunchPdl(EmbeddingKernel<T, kN>, grid, kThreads, 0, CurrentStream(), table.data<T>(), id, row_begin, rows,
                  cols, o);
      } else {
        LaunchPdl(EmbeddingKernel<T, 1>, grid, kThreads, 0, CurrentStream(), table.data<T>(), id, row_begin, rows, cols,
                  o);
      }
    }
  });
}

}  // namespace chai::cuda
