// SplitQkvRotary: the stacked Q | K | V GEMM output [T, qw + 2 * kvw] into contiguous q, k and v,
// with rotary applied to q and k on the way (LLaMA), in one kernel instead of two rotary
// launches plus the three separate projections' outputs.
//
// One block per token. With rotary, its threads first fill the token's cos/sin table in shared
// memory (rotary.cuh, the same angles as Rotary), then each thread rotates 16-byte vectors of
// the q and k heads (which are adjacent in qkv: k head j is head `heads + j` of the row) and
// copies vectors of v. Without rotary (OPT) the row is a plain three-way copy.
#include <algorithm>

#include "kernels/cuda/pdl.cuh"
#include "kernels/cuda/rotary.cuh"

namespace chai::cuda {
namespace {

template <typename T, int N, bool kRotary>
__global__ void SplitQkvKernel(const T* qkv, const int32_t* positions, int heads, int kv_heads, int head_dim,
                               float theta, T* q, T* k, T* v) {
  PdlWait();
  const int64_t token = blockIdx.x;
  const int64_t qw = int64_t{heads} * head_dim, kvw = int64_t{kv_heads} * head_dim;
  const T* row = qkv + token * (qw + 2 * kvw);
  T* qr = q + token * qw;
  T* kr = k + token * kvw;
  T* vr = v + token * kvw;
  if constexpr (kRotary) {
    extern __shared__ float table[];  // cos[half], sin[half]
    const int half = head_dim / 2;
    float* cos_t = table;
    float* sin_t = table + half;
    RotaryTable(positions[token], head_dim, theta, cos_t, sin_t);
    __syncthreads();
    const int vecs_per_head = half / N;
    for (int item = threadIdx.x; item < (heads + kv_heads) * vecs_per_head; item += blockDim.x) {
      const int h = item / vecs_per_head, i0 = (item % vecs_per_head) * N;
      T* dst = h < heads ? qr + int64_t{h} * head_dim : kr + int64_t{h - heads} * head_dim;
      RotateVec<T, N>(row + int64_t{h} * head_dim, dst, half, i0, cos_t, sin_t);
    }
    for (int64_t i = threadIdx.x; i < kvw / N; i += blockDim.x) {
      StoreVec<T, N>(vr + i * N, LoadVec<T, N>(row + qw + kvw + i * N));
    }
  } else {
    // qw and kvw are multiples of N: no vector straddles two outputs.
    for (int64_t i = threadIdx.x; i < (qw + 2 * kvw) / N; i += blockDim.x) {
      const int64_t c = i * N;
      T* dst = c < qw ? qr + c : (c < qw + kvw ? kr + (c - qw) : vr + (c - qw - kvw));
      StoreVec<T, N>(dst, LoadVec<T, N>(row + c));
    }
  }
}

template <typename T, int N, bool kRotary>
void Launch(int64_t tokens, int64_t items, size_t shared, const Tensor& qkv, const Tensor& positions, int heads,
            int kv_heads, int head_dim, float theta, Tensor* q, Tensor* k, Tensor* v) {
  // Up to 512 threads: at decode (one token, one block) more lanes mean fewer dependent loads.
  const int threads = RowThreads(items, 512);
  LaunchPdl(SplitQkvKernel<T, N, kRotary>, tokens, threads, shared, CurrentStream(), qkv.data<T>(),
            kRotary ? positions.data<int32_t>() : nullptr, heads, kv_heads, head_dim, theta, q->data<T>(), k->data<T>(),
            v->data<T>());
}

}  // namespace

void SplitQkvRotary(const Tensor& qkv, const Tensor& positions, int heads, int kv_heads, int head_dim, float theta,
                    bool apply_rotary, Tensor* q, Tensor* k, Tensor* v) {
  const int64_t tokens = qkv.dim(0), width = qkv.dim(1);
  if (tokens == 0 || width == 0) return;
  const int half = head_dim / 2;
  DispatchFloat(qkv.dtype(), "SplitQkvRotary", [&](auto tag) {
    using T = decltype(tag);
    constexpr int kN = kVec16<T>;
    const bool aligned = Aligned(16, {qkv.raw(), q->raw(), k->raw(), v->raw()});
    if (apply_rotary) {
      const bool wide = aligned && half % kN == 0;
      const int n = wide ? kN : 1;
      // Per thread: rotated pairs of q and k, then copies of v; size the block for the larger.
      const int64_t items = std::max<int64_t>(int64_t{heads + kv_heads} * half / n, int64_t{kv_heads} * head_dim / n);
      const size_t shared = 2 * sizeof(float) * half;
      if (wide) {
        Launch<T, kN, true>(tokens, items, shared, qkv, positions, heads, kv_heads, head_dim, theta, q, k, v);
      } else {
        Launch<T, 1, true>(tokens, items, shared, qkv, positions, heads, kv_heads, head_dim, theta, q, k, v);
      }
    } else {
      const bool wide = aligned && head_dim % kN == 0;
      if (wide) {
        Launch<T, kN, false>(tokens, width / kN, 0, qkv, positions, heads, kv_heads, head_dim, theta, q, k, v);
      } else {
        Launch<T, 1, false>(tokens, width, 0, qkv, positions, heads, kv_heads, head_dim, theta, q, k, v);
      }
    }
  });
}

}  // namespace chai::cuda
