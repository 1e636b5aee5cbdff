// Rotary position embedding pieces shared by Rotary (rotary.cu), SplitQkvRotary (split_qkv.cu)
// and SplitQkvRotaryAppend (split_qkv_append.cu), so that all rotate with the same angles and
// rounding.
//
// inv_freq follows Hugging Face (and the CPU reference) exactly: 1 / theta^(2i/d) from a double
// pow rounded to fp32, and the angle as an fp32 product, so large positions agree.
#ifndef CHAI_KERNELS_CUDA_ROTARY_CUH_
#define CHAI_KERNELS_CUDA_ROTARY_CUH_

#include "kernels/cuda/cuda_utils.cuh"

namespace chai::cuda {

// Element i's inverse frequency, and a pair (a, b) = (x[i], x[half + i]) rotated by the angle
// whose cos and sin are c and s, rounded to T: the arithmetic every rotary path here shares (the
// tables below, and the Q|K|V GEMV's epilogue in gemv_fusion.cuh, which rotates one pair at a time).
__device__ __forceinline__ float RotaryInvFreqOf(int i, int head_dim, float theta) {
  return 1.0f / static_cast<float>(pow(static_cast<double>(theta), (2.0 * i) / head_dim));
}

template <typename T>
__device__ __forceinline__ void RotateValues(float fa, float fb, float c, float s, T* ra, T* rb) {
  *ra = FromFloat<T>(fa * c - fb * s);
  *rb = FromFloat<T>(fb * c + fa * s);
}

// The rotary table of one position in two halves, so that the costly half (a double pow per
// frequency) can run before a kernel's PdlWait, while the previous kernel drains: RotaryInvFreq
// stores inv_freq[i] in cos_t[i], RotaryAngles turns it into cos_t[i] and sin_t[i]. Each thread
// visits the same i in both, so no barrier is needed between them; the caller synchronises
// before reading the table.
__device__ __forceinline__ void RotaryInvFreq(int head_dim, float theta, float* cos_t) {
  const int half = head_dim / 2;
  for (int i = threadIdx.x; i < half; i += blockDim.x) cos_t[i] = RotaryInvFreqOf(i, head_dim, theta);
}

__device__ __forceinline__ void RotaryAngles(int32_t position, int head_dim, float* cos_t, float* sin_t) {
  const int half = head_dim / 2;
  const float pos = static_cast<float>(position);
  for (int i = threadIdx.x; i < half; i += blockDim.x) sincosf(pos * cos_t[i], &sin_t[i], &cos_t[i]);
}

// The block's threads fill cos_t[0, half) and sin_t[0, half) for one position; the caller
// synchronises before reading them.
__device__ __forceinline__ void RotaryTable(int32_t position, int head_dim, float theta, float* cos_t, float* sin_t) {
  RotaryInvFreq(head_dim, theta, cos_t);
  RotaryAngles(position, head_dim, cos_t, sin_t);
}

// Elements [i0, i0 + N) of a head rotated with their partners [half + i0, half + i0 + N) of src:
// *ra the first, *rb the partners.
template <typename T, int N>
__device__ __forceinline__ void RotatePair(const T* src, int half, int i0, const float* cos_t, const float* sin_t,
                                           Vec<T, N>* ra, Vec<T, N>* rb) {
  const Vec<T, N> a = LoadVec<T, N>(src + i0), b = LoadVec<T, N>(src + half + i0);
#pragma unroll
  for (int j = 0; j < N; ++j) {
    RotateValues<T>(ToFloat(a.v[j]), ToFloat(b.v[j]), cos_t[i0 + j], sin_t[i0 + j], &ra->v[j], &rb->v[j]);
  }
}

// RotatePair, reading from src and writing to dst (which may be src).
template <typename T, int N>
__device__ __forceinline__ void RotateVec(const T* src, T* dst, int half, int i0, const float* cos_t,
                                          const float* sin_t) {
  Vec<T, N> ra, rb;
  RotatePair<T, N>(src, half, i0, cos_t, sin_t, &ra, &rb);
  StoreVec<T, N>(dst + i0, ra);
  StoreVec<T, N>(dst + half + i0, rb);
}

}  // namespace chai::cuda

#endif  // CHAI_KERNELS_CUDA_ROTARY_CUH_
