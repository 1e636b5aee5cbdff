// PagedAttention prefill on tensor cores (fp16/bf16 storage, head_dim a multiple of 16 up to 128):
// FlashAttention-2 with mma.sync m16n8k16 (fp32 accumulation) and ldmatrix from shared memory.
//
// A CTA of 4 warps owns 64 query rows (16 per warp) of one representative r and a batch of up to
// kPrefillMembers of r's members (same work split as PrefillKernel). Per 64-key tile it copies
// K_{kv(r)} and each member's V tile from their blocks into shared memory (rows padded by 16 bytes
// so that ldmatrix's eight 16-byte rows hit distinct banks), computes the warp's 16 x 64 score
// tile S = Q K^T once, applies the causal mask and the online softmax in registers, and reuses
// the probabilities (the S accumulators repacked as A fragments, FA2's register trick) for
// O_m += P V_m of every member in the batch.
#ifndef CHAI_KERNELS_CUDA_PAGED_ATTENTION_PREFILL_MMA_CUH_
#define CHAI_KERNELS_CUDA_PAGED_ATTENTION_PREFILL_MMA_CUH_

#include <type_traits>

#include "kernels/cuda/paged_attention_common.cuh"
#include "kernels/cuda/paged_attention_prefill.cuh"

namespace chai::cuda::paged {

constexpr int kMmaThreads = 128;  // 4 warps x 16 query rows = kPrefillRows

// Whether (T, head_dim) takes the tensor-core kernel.
template <typename T, int kD>
constexpr bool kMmaPrefill = !std::is_same_v<T, float> && kD > 0 && kD % 16 == 0 && kD <= 128;

// Shared memory: Q tile, K tile and kPrefillMembers V tiles, rows of kD + 8 elements.
template <int kD>
constexpr int MmaPrefillSharedBytes() {
  return (kPrefillRows + kPrefillKeys * (1 + kPrefillMembers)) * (kD + 8) * 2;
}

// Tensor-core primitives; a host emulation may supply its own (CHAI_PAGED_HOST_EMULATION).
#ifndef CHAI_PAGED_HOST_EMULATION
__device__ __forceinline__ uint32_t SharedAddress(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
// Four 8x8 b16 matrices; lanes 8i..8i+7 give the row addresses of matrix i.
__device__ __forceinline__ void LdMatrixX4(uint32_t (&r)[4], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(SharedAddress(row)));
}
__device__ __forceinline__ void LdMatrixX2(uint32_t (&r)[2], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0, %1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(SharedAddress(row)));
}
__device__ __forceinline__ void LdMatrixX2Trans(uint32_t (&r)[2], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0, %1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(SharedAddress(row)));
}
// c += a (16x16, row-major fragments) * b (16x8, column-major fragments), fp32 accumulators.
template <typename T>
__device__ __forceinline__ void Mma16816(float (&c)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  if constexpr (std::is_same_v<T, __half>) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  }
}
#endif  // CHAI_PAGED_HOST_EMULATION

__device__ __forceinline__ uint16_t Bits(__half x) { return static_cast<__half_raw>(x).x; }
__device__ __forceinline__ uint16_t Bits(__nv_bfloat16 x) { return static_cast<__nv_bfloat16_raw>(x).x; }

// Two values as one register of T pairs, `lo` in the low half (the lower address).
template <typename T>
__device__ __forceinline__ uint32_t Pack2(float lo, float hi) {
  return static_cast<uint32_t>(Bits(FromFloat<T>(lo))) | (static_cast<uint32_t>(Bits(FromFloat<T>(hi))) << 16);
}

// The online-softmax step of row half rr (rows g and g + 8 of a 16-row tile; a row lives in the
// 4 lanes of a quad) over one block of keys, in prefill kernels 1 and 2: `mx` is this lane's max
// of its scaled, masked scores of the row. The scores become exp2(x - m_new), their sum joins l,
// and every member's O accumulator is rescaled by exp2(m_old - m_new). m_new is finite: key 0 is
// in the first tile of every row, and a row fully masked in a later tile keeps its m.
template <int kSTiles, int kM, int kOTiles>
__device__ __forceinline__ void PrefillSoftmaxStep(float (&sc)[kSTiles][4], int rr, float mx, float (&m_r)[2],
                                                   float (&l_r)[2], float (&o)[kM][kOTiles][4]) {
  mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
  mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
  const float m_new = fmaxf(m_r[rr], mx);
  const float alpha = exp2f(m_r[rr] - m_new);
  float rs = 0.f;
#pragma unroll
  for (int nt = 0; nt < kSTiles; ++nt)
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      float& x = sc[nt][2 * rr + e];
      x = exp2f(x - m_new);
      rs += x;
    }
  rs += __shfl_xor_sync(0xffffffffu, rs, 1);
  rs += __shfl_xor_sync(0xffffffffu, rs, 2);
  l_r[rr] = l_r[rr] * alpha + rs;
  m_r[rr] = m_new;
#pragma unroll
  for (int mb = 0; mb < kM; ++mb)
#pragma unroll
    for (int nt = 0; nt < kOTiles; ++nt) {
      o[mb][nt][2 * rr] *= alpha;
      o[mb][nt][2 * rr + 1] *= alpha;
    }
}

// P as the A fragments of the P·V mma: keys 16kk..16kk+15 are S tiles 2kk and 2kk+1.
template <typename T, int kSTiles>
__device__ __forceinline__ void PackP(const float (&sc)[kSTiles][4], uint32_t (&pa)[kSTiles / 2][4]) {
#pragma unroll
  for (int kk = 0; kk < kSTiles / 2; ++kk) {
    pa[kk][0] = Pack2<T>(sc[2 * kk][0], sc[2 * kk][1]);
    pa[kk][1] = Pack2<T>(sc[2 * kk][2], sc[2 * kk][3]);
    pa[kk][2] = Pack2<T>(sc[2 * kk + 1][0], sc[2 * kk + 1][1]);
    pa[kk][3] = Pack2<T>(sc[2 * kk + 1][2], sc[2 * kk + 1][3]);
  }
}

// The end of a prefill CTA (kernels 1 and 2): each warp normalises its O accumulators by l and
// writes them to out ([rows, H, kD]), rows g and g + 8 of its 16-row slice (i0 + 16 warp + ..,
// those below i1), columns 8nt + 2t4 and +1 of member mb's head head_of(mb), for the nb members.
template <typename T, int kD, int kM, typename HeadOf>
__device__ __forceinline__ void WritePrefillRows(T* out, int H, const float (&o)[kM][kD / 8][4], const float (&l_r)[2],
                                                 int nb, HeadOf head_of, int row0, int i0, int i1) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, g = lane / 4, t4 = lane % 4;
#pragma unroll
  for (int mb = 0; mb < kM; ++mb) {
    if (mb < nb) {
      const int hm = head_of(mb);
#pragma unroll
      for (int rr = 0; rr < 2; ++rr) {
        const int i = i0 + warp * 16 + g + 8 * rr;
        if (i >= i1) continue;
        const float inv = 1.f / l_r[rr];
        T* orow = out + int64_t{row0 + i} * H * kD + int64_t{hm} * kD;
#pragma unroll
        for (int nt = 0; nt < kD / 8; ++nt) {
          Vec<T, 2> pair;
          pair.v[0] = FromFloat<T>(o[mb][nt][2 * rr] * inv);
          pair.v[1] = FromFloat<T>(o[mb][nt][2 * rr + 1] * inv);
          *reinterpret_cast<Vec<T, 2>*>(orow + nt * 8 + 2 * t4) = pair;
        }
      }
    }
  }
}

// Copies `rows` rows of kD elements into shared memory (row stride kD + 8) with 16-byte accesses;
// row i comes from row_ptr(i) (nullptr: zeros).
template <typename T, int kD, typename RowFn>
__device__ __forceinline__ void CopyRows(T* dst, int rows, RowFn row_ptr) {
  constexpr int kVecs = kD / 8, kLd = kD + 8;
  for (int idx = threadIdx.x; idx < rows * kVecs; idx += kMmaThreads) {
    const int i = idx / kVecs, v = idx - i * kVecs;
    const T* src = row_ptr(i);
    const Vec<T, 8> x = src != nullptr ? LoadVec<T, 8>(src + v * 8) : ZeroVec<T, 8>();
    *reinterpret_cast<Vec<T, 8>*>(dst + i * kLd + v * 8) = x;
  }
}

template <typename T, int kD>
__global__ void __launch_bounds__(kMmaThreads) PrefillMmaKernel(Params p) {
  constexpr int kLd = kD + 8;                // shared row stride (elements)
  constexpr int kKSteps = kD / 16;           // k-steps of S = Q K^T
  constexpr int kSTiles = kPrefillKeys / 8;  // 8-key column tiles of S
  constexpr int kOTiles = kD / 8;            // 8-column tiles of O
  static_assert(kPrefillRows == 16 * (kMmaThreads / 32), "one 16-row slice per warp");
  CHAI_PAGED_DYNAMIC_SHARED(float, smem_raw);
  __shared__ int s_batch[kPrefillMembers];
  __shared__ int s_nb;
  T* q_s = reinterpret_cast<T*>(smem_raw);
  T* k_s = q_s + kPrefillRows * kLd;
  T* v_s = k_s + kPrefillKeys * kLd;  // [kPrefillMembers][kPrefillKeys][kLd]

  const int H = p.heads, G = p.group;
  PrefillWork w;
  if (!PrefillWorkOf(p, s_batch, &s_nb, &w)) return;
  const int r = w.r, row0 = w.row0, i0 = w.i0, i1 = w.i1, nb = w.nb, past = w.past, kend = w.kend;
  const int len = w.len;
  const int64_t trow = w.trow;
  const T* pool = static_cast<const T*>(p.pool);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int g = lane / 4, t4 = lane % 4;  // fragment row group and column pair
  const int bs = p.block_size, shift = p.block_shift, d = kD;

  // Q tile of the representative; rows past the end repeat the last row.
  const T* q = static_cast<const T*>(p.q);
  CopyRows<T, kD>(q_s, kPrefillRows,
                  [&](int i) { return q + int64_t{row0 + min(i0 + i, i1 - 1)} * H * kD + int64_t{r} * kD; });

  int qpos[2];
  float m_r[2], l_r[2];
#pragma unroll
  for (int rr = 0; rr < 2; ++rr) {
    qpos[rr] = past + min(i0 + warp * 16 + g + 8 * rr, i1 - 1);
    m_r[rr] = -INFINITY;
    l_r[rr] = 0.f;
  }
  float o[kPrefillMembers][kOTiles][4];
#pragma unroll
  for (int mb = 0; mb < kPrefillMembers; ++mb)
#pragma unroll
    for (int nt = 0; nt < kOTiles; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) o[mb][nt][e] = 0.f;

  const int32_t* ktab = p.tables + (trow * 2 * p.kv_heads + r / G) * p.max_blocks;
  const int32_t* vtab[kPrefillMembers];
#pragma unroll
  for (int mb = 0; mb < kPrefillMembers; ++mb) {
    vtab[mb] = p.tables + ((trow * 2 + 1) * p.kv_heads + s_batch[mb < nb ? mb : 0] / G) * p.max_blocks;
  }

  for (int kt = 0; kt < kend; kt += kPrefillKeys) {
    __syncthreads();  // the previous tile's readers are done (and, first time, nothing pending)
    auto key_row = [&](const int32_t* table) {
      return [=](int i) { return kt + i < len ? RowPtr(pool, table, kt + i, bs, shift, d) : nullptr; };
    };
    CopyRows<T, kD>(k_s, kPrefillKeys, key_row(ktab));
#pragma unroll
    for (int mb = 0; mb < kPrefillMembers; ++mb) {
      if (mb < nb) CopyRows<T, kD>(v_s + mb * kPrefillKeys * kLd, kPrefillKeys, key_row(vtab[mb]));
    }
    __syncthreads();

    // S = Q K^T for this warp's 16 rows and the tile's 64 keys.
    float sc[kSTiles][4];
#pragma unroll
    for (int nt = 0; nt < kSTiles; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) sc[nt][e] = 0.f;
#pragma unroll
    for (int ks = 0; ks < kKSteps; ++ks) {
      uint32_t a[4];
      LdMatrixX4(a, q_s + (warp * 16 + lane % 16) * kLd + ks * 16 + (lane / 16) * 8);
#pragma unroll
      for (int nt = 0; nt < kSTiles; ++nt) {
        uint32_t b[2];
        LdMatrixX2(b, k_s + (nt * 8 + lane % 8) * kLd + ks * 16 + ((lane / 8) % 2) * 8);
        Mma16816<T>(sc[nt], a, b);
      }
    }

    // Causal mask and online softmax over the rows g and g + 8 (a row lives in 4 lanes).
#pragma unroll
    for (int rr = 0; rr < 2; ++rr) {
      float mx = -INFINITY;
#pragma unroll
      for (int nt = 0; nt < kSTiles; ++nt)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          float& x = sc[nt][2 * rr + e];
          x = kt + nt * 8 + 2 * t4 + e > qpos[rr] ? -INFINITY : x * p.scale_log2;
          mx = fmaxf(mx, x);
        }
      PrefillSoftmaxStep(sc, rr, mx, m_r, l_r, o);
    }
    uint32_t pa[kSTiles / 2][4];
    PackP<T>(sc, pa);
    // O_m += P V_m for every member of the batch (the same probabilities).
#pragma unroll
    for (int mb = 0; mb < kPrefillMembers; ++mb) {
      if (mb < nb) {
        const T* vm = v_s + mb * kPrefillKeys * kLd;
#pragma unroll
        for (int kk = 0; kk < kPrefillKeys / 16; ++kk)
#pragma unroll
          for (int nt = 0; nt < kOTiles; ++nt) {
            uint32_t b[2];
            LdMatrixX2Trans(b, vm + (kk * 16 + lane % 8 + ((lane / 8) % 2) * 8) * kLd + nt * 8);
            Mma16816<T>(o[mb][nt], pa[kk], b);
          }
      }
    }
  }

  WritePrefillRows<T, kD>(static_cast<T*>(p.out), H, o, l_r, nb, [&](int mb) { return s_batch[mb]; }, row0, i0, i1);
}

}  // namespace chai::cuda::paged

#endif  // CHAI_KERNELS_CUDA_PAGED_ATTENTION_PREFILL_MMA_CUH_
