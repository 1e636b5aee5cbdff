// Rotary position embedding in place, Hugging Face rotate_half layout: element i of a head
// pairs with element i + head_dim/2.
//
// One block per token: its threads first compute the token's cos/sin table (head_dim/2
// angles) into shared memory, then rotate every head with it (rotary.cuh: the angles follow HF
// and the CPU reference exactly).
#include "kernels/cuda/pdl.cuh"
#include "kernels/cuda/rotary.cuh"

namespace chai::cuda {
namespace {

template <typename T, int N>
__global__ void RotaryKernel(T* x, const int32_t* positions, int num_heads, int head_dim, float theta) {
  PdlWait();
  extern __shared__ float table[];  // cos[half], sin[half]
  const int half = head_dim / 2;
  float* cos_t = table;
  float* sin_t = table + half;
  RotaryTable(positions[blockIdx.x], head_dim, theta, cos_t, sin_t);
  __syncthreads();

  T* row = x + int64_t{blockIdx.x} * num_heads * head_dim;
  const int vecs_per_head = half / N;
  for (int k = threadIdx.x; k < num_heads * vecs_per_head; k += blockDim.x) {
    const int h = k / vecs_per_head, i0 = (k % vecs_per_head) * N;
    T* v = row + int64_t{h} * head_dim;
    RotateVec<T, N>(v, v, half, i0, cos_t, sin_t);
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
      LaunchPdl(RotaryKernel<T, kN>, tokens, threads, shared, CurrentStream(), x->data<T>(), positions.data<int32_t>(),
                num_heads, head_dim, theta);
    } else {
      LaunchPdl(RotaryKernel<T, 1>, tokens, threads, shared, CurrentStream(), x->data<T>(), positions.data<int32_t>(),
                num_heads, head_dim, theta);
    }
  });
}

}  // namespace chai::cuda
