// SplitQkvRotaryAppend: SplitQkvRotary (split_qkv.cu) and PagedAppend (paged_append.cu) in one
// kernel. A decode step ran the two back to back in every layer, the second only to move the
// first's k and v rows into the cache; at batch 1 each launch costs a few microseconds of a step
// that sits at the memory floor. (Decode steps now do this work in the Q|K|V GEMV's epilogue,
// ops::QkvLinearAppend; this kernel serves prefill and the steps where CHAI reads this step's K.)
//
// One block per token, as in SplitQkvKernel. Before the barrier that publishes the rotary table,
// the block also resolves where each (side, KV head) row of its token goes in the pool (the
// sequence by binary search over q_start, the position seq_lens[s] - n_s + i, one table read per
// slice), so the table reads overlap the cos/sin computation instead of following it. Then each
// thread rotates 16-byte vectors of q and k (k straight into its cache slot, and into k when the
// caller keeps it) and copies vectors of v to the cache (and to v). The slot rules are
// PagedAppend's: rows outside every sequence, positions outside the table and slices without a
// block (CHAI's dropped K heads, -1 in the table) are not written to the cache. The arithmetic is
// RotatePair's, so q and k agree bit for bit with SplitQkvRotary.
#include <algorithm>

#include "kernels/cuda/pdl.cuh"
#include "kernels/cuda/rotary.cuh"

namespace chai::cuda {
namespace {

// The cache side of the launch (device pointers and sizes from PagedKv and BatchLayout).
struct CacheArgs {
  const int32_t* tables;
  const int32_t* q_start;
  const int32_t* seq_lens;
  const int32_t* slots;  // null: table row s
  int num_seqs;
  int block_size;
  int max_blocks;
};

// Fills dst[side * kv_heads + g] with the element offset in the pool of token t's slot for
// (side, KV head g), or -1 where PagedAppend writes nothing.
__device__ __forceinline__ void ResolveSlots(const CacheArgs& c, int t, int kv_heads, int head_dim, int64_t* dst) {
  if (static_cast<int>(threadIdx.x) >= 2 * kv_heads) return;
  int64_t base = -1;  // the slot's offset within its block's first row, for every slice of the token
  int b = 0;
  int64_t trow = 0;
  if (c.num_seqs > 0) {
    // The last sequence whose first row is <= t (empty sequences share their start with the next).
    int lo = 0, hi = c.num_seqs - 1;
    while (lo < hi) {
      const int mid = (lo + hi + 1) / 2;
      if (c.q_start[mid] <= t) {
        lo = mid;
      } else {
        hi = mid - 1;
      }
    }
    const int s = lo, first = c.q_start[s], n = c.q_start[s + 1] - first;
    if (t >= first && t < first + n) {
      const int pos = c.seq_lens[s] - n + (t - first);
      if (pos >= 0 && pos / c.block_size < c.max_blocks) {
        b = pos / c.block_size;
        base = int64_t{pos % c.block_size} * head_dim;
        trow = c.slots != nullptr ? c.slots[s] : s;
      }
    }
  }
  for (int i = threadIdx.x; i < 2 * kv_heads; i += blockDim.x) {
    int64_t off = -1;
    if (base >= 0) {
      const int32_t block = c.tables[(trow * 2 * kv_heads + i) * c.max_blocks + b];  // i = side * kv_heads + g
      if (block >= 0) off = int64_t{block} * c.block_size * head_dim + base;
    }
    dst[i] = off;
  }
}

template <typename T, int N, bool kRotary>
__global__ void SplitQkvAppendKernel(const T* qkv, const int32_t* positions, int heads, int kv_heads, int head_dim,
                                     float theta, T* pool, CacheArgs cache, T* q, T* k, T* v) {
  // Shared: the slots' pool offsets [2 * kv_heads], then with rotary cos[half], sin[half].
  extern __shared__ int64_t shared[];
  int64_t* slot = shared;
  float* cos_t = reinterpret_cast<float*>(slot + 2 * kv_heads);
  float* sin_t = cos_t + head_dim / 2;
  if constexpr (kRotary) RotaryInvFreq(head_dim, theta, cos_t);  // reads no global memory: before the wait
  PdlWait();
  const int t = blockIdx.x;
  const int64_t qw = int64_t{heads} * head_dim, kvw = int64_t{kv_heads} * head_dim;
  const T* row = qkv + int64_t{t} * (qw + 2 * kvw);
  T* qr = q + int64_t{t} * qw;
  T* kr = k != nullptr ? k + int64_t{t} * kvw : nullptr;
  T* vr = v != nullptr ? v + int64_t{t} * kvw : nullptr;
  ResolveSlots(cache, t, kv_heads, head_dim, slot);
  if constexpr (kRotary) {
    const int half = head_dim / 2;
    RotaryAngles(positions[t], head_dim, cos_t, sin_t);
    __syncthreads();
    const int vecs_per_head = half / N;
    for (int item = threadIdx.x; item < (heads + kv_heads) * vecs_per_head; item += blockDim.x) {
      const int h = item / vecs_per_head, i0 = (item % vecs_per_head) * N;
      const T* src = row + int64_t{h} * head_dim;
      if (h < heads) {
        RotateVec<T, N>(src, qr + int64_t{h} * head_dim, half, i0, cos_t, sin_t);
        continue;
      }
      const int g = h - heads;
      Vec<T, N> ra, rb;
      RotatePair<T, N>(src, half, i0, cos_t, sin_t, &ra, &rb);
      if (const int64_t off = slot[g]; off >= 0) {
        StoreVec<T, N>(pool + off + i0, ra);
        StoreVec<T, N>(pool + off + half + i0, rb);
      }
      if (kr != nullptr) {
        StoreVec<T, N>(kr + int64_t{g} * head_dim + i0, ra);
        StoreVec<T, N>(kr + int64_t{g} * head_dim + half + i0, rb);
      }
    }
    // head_dim is a multiple of N here (half is): no vector straddles two heads.
    for (int64_t i = threadIdx.x; i < kvw / N; i += blockDim.x) {
      const int64_t c = i * N;
      const int g = static_cast<int>(c / head_dim);
      const Vec<T, N> val = LoadVec<T, N>(row + qw + kvw + c);
      if (const int64_t off = slot[kv_heads + g]; off >= 0) {
        StoreVec<T, N>(pool + off + (c - int64_t{g} * head_dim), val);
      }
      if (vr != nullptr) StoreVec<T, N>(vr + c, val);
    }
  } else {
    __syncthreads();
    // head_dim is a multiple of N: no vector straddles two heads or two outputs.
    for (int64_t i = threadIdx.x; i < (qw + 2 * kvw) / N; i += blockDim.x) {
      const int64_t c = i * N;
      const Vec<T, N> val = LoadVec<T, N>(row + c);
      if (c < qw) {
        StoreVec<T, N>(qr + c, val);
        continue;
      }
      const int side = c >= qw + kvw;
      const int64_t within = c - qw - side * kvw;  // column in k or v
      const int g = static_cast<int>(within / head_dim);
      if (const int64_t off = slot[side * kv_heads + g]; off >= 0) {
        StoreVec<T, N>(pool + off + (within - int64_t{g} * head_dim), val);
      }
      T* out = side ? vr : kr;
      if (out != nullptr) StoreVec<T, N>(out + within, val);
    }
  }
}

template <typename T, int N, bool kRotary>
void Launch(int64_t tokens, int64_t items, const Tensor& qkv, const Tensor& positions, int heads, int kv_heads,
            int head_dim, float theta, const PagedKv& kv, const BatchLayout& batch, Tensor* q, Tensor* k, Tensor* v) {
  // Up to 512 threads, as SplitQkvRotary: at decode (one token, one block) more lanes mean fewer
  // dependent loads; at least one thread per slot to resolve.
  const int threads = RowThreads(std::max<int64_t>(items, 2 * kv_heads), 512);
  const size_t shared = sizeof(int64_t) * 2 * kv_heads + (kRotary ? sizeof(float) * head_dim : 0);
  const CacheArgs cache{kv.tables.data<int32_t>(),
                        batch.q_start.data<int32_t>(),
                        batch.seq_lens.data<int32_t>(),
                        batch.slots.defined() ? batch.slots.data<int32_t>() : nullptr,
                        batch.num_seqs,
                        kv.block_size,
                        kv.max_blocks};
  LaunchPdl(SplitQkvAppendKernel<T, N, kRotary>, tokens, threads, shared, CurrentStream(), qkv.data<T>(),
            kRotary ? positions.data<int32_t>() : nullptr, heads, kv_heads, head_dim, theta, kv.pool.data<T>(), cache,
            q->data<T>(), k != nullptr ? k->data<T>() : nullptr, v != nullptr ? v->data<T>() : nullptr);
}

}  // namespace

void SplitQkvRotaryAppend(const Tensor& qkv, const Tensor& positions, int heads, int kv_heads, int head_dim,
                          float theta, bool apply_rotary, const PagedKv& kv, const BatchLayout& batch, Tensor* q,
                          Tensor* k, Tensor* v) {
  const int64_t tokens = qkv.dim(0), width = qkv.dim(1);
  if (tokens == 0 || width == 0) return;
  const int half = head_dim / 2;
  DispatchFloat(qkv.dtype(), "SplitQkvRotaryAppend", [&](auto tag) {
    using T = decltype(tag);
    constexpr int kN = kVec16<T>;
    const bool aligned = Aligned(16, {qkv.raw(), q->raw(), k != nullptr ? k->raw() : nullptr,
                                      v != nullptr ? v->raw() : nullptr, kv.pool.raw()});
    if (apply_rotary) {
      const bool wide = aligned && half % kN == 0;
      const int n = wide ? kN : 1;
      // Per thread: rotated pairs of q and k, then copies of v; size the block for the larger.
      const int64_t items = std::max<int64_t>(int64_t{heads + kv_heads} * half / n, int64_t{kv_heads} * head_dim / n);
      if (wide) {
        Launch<T, kN, true>(tokens, items, qkv, positions, heads, kv_heads, head_dim, theta, kv, batch, q, k, v);
      } else {
        Launch<T, 1, true>(tokens, items, qkv, positions, heads, kv_heads, head_dim, theta, kv, batch, q, k, v);
      }
    } else {
      const bool wide = aligned && head_dim % kN == 0;
      if (wide) {
        Launch<T, kN, false>(tokens, width / kN, qkv, positions, heads, kv_heads, head_dim, theta, kv, batch, q, k, v);
      } else {
        Launch<T, 1, false>(tokens, width, qkv, positions, heads, kv_heads, head_dim, theta, kv, batch, q, k, v);
      }
    }
  });
}

}  // namespace chai::cuda
