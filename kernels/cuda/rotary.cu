// Rotary position embedding in place, Hugging Face rotate_half layout: element i of a head
// pairs with element i + head_dim/2.
//
// One block per token: its threads first compute the token's cos/sin table (head_dim/2
// angles) into shared memory, then rotate every head with it. inv_freq follows HF (and the CPU
// reference) exactly: 1 / theta^(2i/d) from a double pow rounded to fp32, and the angle as an
// fp32 product, so large positions agree with the reference.
#include "kernels/cuda/cuda_utils.cuh"

namespace chai::cuda {
namespace {

template <typename T, int N>
__global__ void RotaryKernel(T* x, const int32_t* positions, int num_heads, int head_dim, float theta) {
  extern __shared__ float table[];  // cos[half], sin[half]
  const int half = head_dim / 2;
  float* cos_t = table;
  float* sin_t = table + half;
  const float pos = static_cast<float>(positions[blockIdx.x]);
  for (int i = threadIdx.x; i < half; i += blockDim.x) {
    const float inv_freq = 1.0f / static_cast<float>(pow(static_cast<double>(theta), (2.0 * i) / head_dim));
    sincosf(pos * inv_freq, &sin_t[i], &cos_t[i]);
  }
  __syncthreads();

  T* row = x + int64_t{blockIdx.x} * num_heads * head_dim;
  const int vecs_per_head = half / N;
  for (int k = threadIdx.x; k < num_heads * vecs_per_head; k += blockDim.x) {
    const int h = k / vecs_per_head, i0 = (k % vecs_per_head) * N;
    T* v = row + int64_t{h} * head_dim + i0;
    const Vec<T, N> a = LoadVec<T, N>(v), b = LoadVec<T, N>(v + half);
    Vec<T, N> ra, rb;
#pragma unroll
    for (int j = 0; j < N; ++j) {
      const float fa = ToFloat(a.v[j]), fb = ToFloat(b.v[j]), c = cos_t[i0 + j], s = sin_t[i0 + j];
      ra.v[j] = FromFloat<T>(fa * c - fb * s);
      rb.v[j] = FromFloat<T>(fb * c + fa * s);
    }
    StoreVec<T, N>(v, ra);
    StoreVec<T, N>(v + half, rb);
  }
}

}  // namespace

void Rotary(Tensor* x, const Tensor& positions, int num_heads, int head_dim, float theta) {
  const int64_t tokens = x->dim(0);
  if (tokens == 0 || num_heads == 0 || head_dim == 0) return;
  const int half = head_dim / 2;
  const size_t shared = 2 * sizeof(float) * half;
  DispatchFloat(x->dtype(), "Rotary", [&](auto tag) {
    using T = decltype(tag);
    constexpr int kN = kVec16<T>;
    const bool wide = half % kN == 0 && Aligned(16, {x->raw()});
    const int threads = RowThreads(int64_t{num_heads} * half / (wide ? kN : 1), 256);
    if (wide) {
      RotaryKernel<T, kN><<<tokens, threads, shared, CurrentStream()>>>(x->data<T>(), positions.data<int32_t>(),
                                                                        num_heads, head_dim, theta);
    } else {
      RotaryKernel<T, 1><<<tokens, threads, shared, CurrentStream()>>>(x->data<T>(), positions.data<int32_t>(),
                                                                       num_heads, head_dim, theta);
    }
    CHAI_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace chai::cuda
