// What the decode GEMV (gemv_kernel.cuh) folds around its product for ops::LinearFused: the RMSNorm of its
// input rows (x * w_norm as the MMA's B operand, the norm's scale applied to the sums), and after
// the product the residual add or SiLU(gate) * up (in the output loop). The epilogues round
// exactly as the ops they replace; the norm differs from RmsNorm then Linear in rounding only
// (RmsScaledInput says how).
#ifndef CHAI_KERNELS_CUDA_GEMV_FUSION_CUH_
#define CHAI_KERNELS_CUDA_GEMV_FUSION_CUH_

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

#include "kernels/cuda/cuda_utils.cuh"
#include "kernels/cuda/gemv_tile.cuh"
#include "kernels/cuda/lamport_words.cuh"
#include "kernels/cuda/rotary.cuh"
#include "kernels/peer_mirror.h"

namespace chai::cuda::gemv {

enum class Input { kPlain, kRmsNorm };              // B = x, or x * w_norm with the norm's scale on the sums
// out = P, out += P, out = SiLU(gate) * up of P's halves, out = ReLU(P), P's Q | K | V heads
// split, rotated and K, V appended to the paged cache (QkvAppend below), or out = P also written
// into the peers' all-reduce receive slots (WriteMirrored below)
enum class Output { kStore, kAddTo, kSiluMul, kRelu, kQkvAppend, kStoreMirror };

// RMSNorm folded into the product, for a row of y = RmsNorm(x) * w_norm read by the GEMV:
//   (W y)[n] = sum_k W[n][k] x[k] inv w_norm[k] = inv * sum_k W[n][k] (x[k] w_norm[k]),
//   inv = rsqrt(mean(x^2) + eps),
// so the MMA's B operand is T(x * w_norm) (one rounding of the exact product, as __hmul2 gives
// it), formed as each chunk of x arrives, and inv scales the fp32 sums in the output loop. The
// same loads give the sum of squares: each lane adds x^2 over the chunks it reads; within a
// CTA the lanes of token t (lane group g = t, chunks q = 0..3 of each warp step) read every
// chunk of the CTA's span exactly once, so their sums, added in a fixed order (ReduceSquares),
// are the span's sum of squares. So the weight stream starts at once, as in the plain GEMV;
// the norm costs a few instructions per chunk and a reduction at the end, not a pass over x
// before the product (the previous design, which staged RmsNorm(x) in shared memory first and
// lost to the separate norm kernel). Summing the squares on the tensor cores instead (an MMA of
// x with itself, whose diagonal is the tokens' sums) was measured slower on an H200: +2.8 us
// against +1.5 us over the plain GEMV for gate|up at T = 1 (benchmarks/results/llama-7b-tp1-h200.md).
// It differs from RmsNorm then Linear only in rounding: y is not rounded to T before the product
// (T(x * w_norm) is, at T's relative precision), and the squares are summed in another order.
// fp16 note: x * w_norm must stay within fp16's range, as x and RmsNorm(x) * w_norm do for any
// residual stream whose norm weights are at most about 1 in magnitude where x is near 65504.
template <typename T>
struct RmsScaledInput {
  const uint4* x;       // the lane's token row, at its chunk q
  const uint4* w_norm;  // the norm weights, at chunk q
  float squares = 0.f;  // x^2 summed over the chunks this lane read
  struct Raw {
    uint4 x, w;
  };
  __device__ __forceinline__ Raw Load(int64_t c) const { return Raw{LoadCached(x + c), LoadCached(w_norm + c)}; }
  __device__ __forceinline__ uint4 Finish(const Raw& raw) {
    const uint32_t xs[4] = {raw.x.x, raw.x.y, raw.x.z, raw.x.w}, ws[4] = {raw.w.x, raw.w.y, raw.w.z, raw.w.w};
    uint32_t b[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      using T2 = std::conditional_t<std::is_same_v<T, __half>, __half2, __nv_bfloat162>;
      const T2 xv = *reinterpret_cast<const T2*>(&xs[i]), wv = *reinterpret_cast<const T2*>(&ws[i]);
      const T2 p = __hmul2(xv, wv);
      b[i] = *reinterpret_cast<const uint32_t*>(&p);
      const float lo = ToFloat(xv.x), hi = ToFloat(xv.y);
      squares = fmaf(lo, lo, squares);
      squares = fmaf(hi, hi, squares);
    }
    return make_uint4(b[0], b[1], b[2], b[3]);
  }
};

// The CTA's sum of squares of token t's span, for t < 8 (lane group g = t), into
// sums[warp][t]: the four q lanes' sums added (xor shuffles), one value per warp. The caller
// adds the warps in warp order after a barrier.
template <int kWarps>
__device__ __forceinline__ void ReduceSquares(float squares, float (*sums)[8]) {
  squares += __shfl_xor_sync(0xffffffffu, squares, 1);
  squares += __shfl_xor_sync(0xffffffffu, squares, 2);
  const int lane = threadIdx.x & 31;
  if ((lane & 3) == 0) sums[threadIdx.x >> 5][lane >> 2] = squares;
}

// The outputs of one CTA from its fp32 sums: sum(e) is the dot product of tile element e (token
// e / kRows, tile row e % kRows; see ConsecutiveRows and PairedHalvesRows for which W row a tile
// row streams). `first`: the CTA's first row (kStore, kAddTo) or output column (kSiluMul).
//  kStore:   out[t][row] = T(P), P = sum + bias[row], as the plain GEMV stores it;
//  kAddTo:   out[t][row] = T(out[t][row] + T(P)): Linear then ops::Add (or the add of AddRmsNorm),
//            bit for bit; out is the residual stream, updated in place (each element by one thread);
//  kSiluMul: out[t][j] = T(silu(G) * U) with G = T(P_gate), U = T(P_up) the values Linear would
//            store for gate | up rows j and half + j, then SiluMulFused's expression, bit for bit;
//  kRelu:    out[t][row] = T(P) where T(P) > 0, else 0: Linear then ops::Relu, bit for bit.
template <typename T, int kRows, Output kOut, typename Sum>
__device__ __forceinline__ void WriteOutputs(const Sum& sum, const T* __restrict__ bias, int tokens, int64_t n,
                                             int64_t first, T* __restrict__ out, int threads) {
  if constexpr (kOut == Output::kSiluMul) {
    constexpr int kCols = kRows / 2;
    const int64_t half = n / 2;
    for (int e = threadIdx.x; e < kCols * 8; e += threads) {
      const int t = e / kCols, jj = e % kCols;
      const int64_t j = first + jj;
      if (t >= tokens || j >= half) continue;
      const int gate = t * kRows + (jj / 8) * 16 + jj % 8;  // the up sum is 8 tile rows further on
      float pg = sum(gate), pu = sum(gate + 8);
      if (bias != nullptr) {
        pg += ToFloat(bias[j]);
        pu += ToFloat(bias[half + j]);
      }
      const float g = ToFloat(FromFloat<T>(pg)), u = ToFloat(FromFloat<T>(pu));
      out[t * half + j] = FromFloat<T>(g / (1.f + expf(-g)) * u);  // SiluMulOp (elementwise.cu)
    }
  } else {
    for (int e = threadIdx.x; e < kRows * 8; e += threads) {
      const int t = e / kRows;
      const int64_t row = first + e % kRows;
      if (t >= tokens || row >= n) continue;
      float p = sum(e);
      if (bias != nullptr) p += ToFloat(bias[row]);
      T* o = out + t * n + row;
      if constexpr (kOut == Output::kAddTo) {
        *o = FromFloat<T>(ToFloat(*o) + ToFloat(FromFloat<T>(p)));  // AddOp (elementwise.cu)
      } else if constexpr (kOut == Output::kRelu) {
        const float v = ToFloat(FromFloat<T>(p));
        *o = FromFloat<T>(v > 0.f ? v : 0.f);  // ReluOp (elementwise.cu) on the stored value
      } else {
        *o = FromFloat<T>(p);
      }
    }
  }
}

// The Q | K | V epilogue (ops::QkvLinearAppend): the stacked projection's output is split into
// q (stored), and k, v written straight into their slots of the paged cache, with rotary on q and
// k, as SplitQkvRotaryAppend does after a plain Linear, so that a decode step runs one kernel
// where it ran two. Rotary pairs element j of a head with element half + j: the CTA streams those
// two W rows at tile rows g and g + 8 (HeadHalvesRows), so the thread that writes a pair holds both
// sums. `out` is q [T, heads * head_dim].
struct QkvAppend {
  const int32_t* positions;   // [T]: each token's position (rotary angle and cache slot)
  const int32_t* token_rows;  // [T]: the block-table row of each token's sequence, -1: none
  const int32_t* tables;      // [rows, 2, kv_heads, max_blocks]
  void* pool;
  int block_size = 0, max_blocks = 0;
  int heads = 0, kv_heads = 0, half = 0;  // head_dim = 2 * half
  float theta = 0.f;
  bool rotary = false;
};

// Head halves, for W = Q | K | V with heads of 2 * half rows: pair p = first + r * 8 + g (past
// `pairs`: pairs - 1, discarded) streams row (p / half) * 2 * half + p % half at tile row r * 16 +
// g and its partner, half rows on, at r * 16 + 8 + g.
struct HeadHalvesRows {
  int64_t first, pairs;
  int half;
  __device__ __forceinline__ int64_t operator()(int r, int h, int g) const {
    int64_t p = first + r * 8 + g;
    p = p < pairs ? p : pairs - 1;
    return (p / half) * 2 * half + p % half + h * half;
  }
};

// The outputs of one CTA of the Q | K | V GEMV (kQkvAppend), from its fp32 sums (see
// WriteOutputs): for each token t and pair p (head hh = p / half, element j = p % half), A and B =
// T(P + bias) of rows (hh, j) and (hh, half + j), the values Linear would store; then
// SplitQkvRotaryAppend's arithmetic (RotatePair) and slot rules (PagedAppend's: no write where the
// token has no row, its position is past the table, or the slice has no block).
// Cost: on an H200 (warm caches, ncu) this GEMV takes ~30 us at T = 1 for 25.3 us of weights at copy
// bandwidth, ~2.3 us more than the plain-store GEMV did. Reading the positions, token rows and block
// ids during the weight stream instead of here (the span split after every warp's first group) was
// measured slower end to end (19dd363, H100: 5.212 / 5.198 against 5.165 / 5.162 ms at batch 1)
// and removed; what the extra time is remains open.
template <typename T, int kRows, typename Sum>
__device__ __forceinline__ void WriteQkvAppend(const Sum& sum, const T* __restrict__ bias, int tokens, int64_t pairs,
                                               int64_t first, T* __restrict__ q, const QkvAppend& a, int threads) {
  constexpr int kCols = kRows / 2;
  const int half = a.half, hd = 2 * half;
  T* pool = static_cast<T*>(a.pool);
  for (int e = threadIdx.x; e < kCols * 8; e += threads) {
    const int t = e / kCols, jj = e % kCols;
    const int64_t p = first + jj;
    if (t >= tokens || p >= pairs) continue;
    const int hh = static_cast<int>(p / half), j = static_cast<int>(p % half);
    const int64_t row_a = int64_t{hh} * hd + j;
    const int lo = t * kRows + (jj / 8) * 16 + jj % 8;  // the partner's sum is 8 tile rows further on
    float pa = sum(lo), pb = sum(lo + 8);
    if (bias != nullptr) {
      pa += ToFloat(bias[row_a]);
      pb += ToFloat(bias[row_a + half]);
    }
    T ta = FromFloat<T>(pa), tb = FromFloat<T>(pb);
    const int32_t pos = a.positions[t];
    if (a.rotary && hh < a.heads + a.kv_heads) {  // as RotaryTable + RotatePair (rotary.cuh), for element j
      float s, c;
      sincosf(static_cast<float>(pos) * RotaryInvFreqOf(j, hd, a.theta), &s, &c);
      RotateValues<T>(ToFloat(ta), ToFloat(tb), c, s, &ta, &tb);
    }
    if (hh < a.heads) {
      T* qr = q + int64_t{t} * a.heads * hd + int64_t{hh} * hd;
      qr[j] = ta;
      qr[half + j] = tb;
      continue;
    }
    const int side = hh >= a.heads + a.kv_heads, g = hh - a.heads - side * a.kv_heads;
    const int32_t trow = a.token_rows[t];
    if (trow < 0 || pos < 0 || pos / a.block_size >= a.max_blocks) continue;
    const int32_t block = a.tables[(int64_t{trow} * 2 * a.kv_heads + side * a.kv_heads + g) * a.max_blocks +
                                   pos / a.block_size];
    if (block < 0) continue;
    T* slot = pool + (int64_t{block} * a.block_size + pos % a.block_size) * hd;
    slot[j] = ta;
    slot[half + j] = tb;
  }
}

// kStoreMirror (ops::LinearFused with a mirror, kernels/peer_mirror.h): out = T(P) as kStore writes
// it, by 16-byte groups (one thread per 8 consecutive outputs of a token; n % 8 == 0 and out
// 16-byte aligned, so a CTA's 16 * kR rows are whole groups), each group also stored into this
// rank's receive slot on every peer, in the parity half the all-reduce's next call reads there
// (the epoch of the block that reads row t, plus one). A row-parallel layer's partial output thus
// reaches the peers while the GEMV's other CTAs still stream, and the all-reduce that follows
// (pushed) only waits for the peers' groups. Same values as kStore, bit for bit.
template <typename T, int kRows, typename Sum>
__device__ __forceinline__ void WriteMirrored(const Sum& sum, const T* __restrict__ bias, int tokens, int64_t n,
                                              int64_t first, T* __restrict__ out, const PeerMirror& m, int threads) {
  static_assert(sizeof(T) == 2 && kRows % 8 == 0, "16-byte groups of 8 two-byte outputs");
  constexpr int kGroups = kRows / 8;  // per token
  const auto* epochs = static_cast<const unsigned long long*>(m.epochs);
  for (int e = threadIdx.x; e < kGroups * 8; e += threads) {
    const int t = e / kGroups, gi = e % kGroups;
    const int64_t row0 = first + gi * 8;
    if (t >= tokens || row0 >= n) continue;
    union {
      uint4 bits;
      T v[8];
    } g;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      float p = sum(t * kRows + gi * 8 + j);
      if (bias != nullptr) p += ToFloat(bias[row0 + j]);
      g.v[j] = FromFloat<T>(p);
    }
    const int64_t elem = int64_t{t} * n + row0;
    *reinterpret_cast<uint4*>(out + elem) = g.bits;
    const uint4 sent = lamport::NotSentinel<T>(g.bits);
    const unsigned long long epoch = epochs[t % m.reader_blocks] + 1;
    const size_t at = m.offset + (epoch & 1ull) * m.parity_stride + static_cast<size_t>(elem / 8) * 16;
    for (int q = 0; q < m.world; ++q) {
      if (q != m.rank) lamport::StoreVolatile(static_cast<char*>(m.base[q]) + at, sent);
    }
  }
}

}  // namespace chai::cuda::gemv

#endif  // CHAI_KERNELS_CUDA_GEMV_FUSION_CUH_
