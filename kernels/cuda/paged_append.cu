// PagedAppend on the GPU: scatters the step's new K and V rows into their cache blocks.
//
// Grid (new row t, slice of the row): each thread copies one unit, so all of a row's table reads
// and copies are in flight at once (one CTA looping over a row took ~10 us at batch 1: its
// eight dependent table-read/copy trips per thread were the whole kernel). The row's sequence comes from a binary search over q_start (so the
// launch needs no host knowledge of the layout), its position is seq_lens[s] - n_s + i, and every
// (side, KV head) slice of the row is copied to its block as raw bytes in the widest unit that
// divides the head's bytes (16 bytes for the usual head sizes). Heads without a block at that
// position (CHAI's dropped K heads) are skipped. The copy is dtype-agnostic.
#include "kernels/cuda/cuda_utils.cuh"
#include "kernels/cuda/pdl.cuh"

namespace chai::cuda {
namespace {

template <typename U>  // the copy unit: uint4, uint2, uint32_t or uint16_t
__global__ void __launch_bounds__(128)
    PagedAppendKernel(const U* __restrict__ k, const U* __restrict__ v, U* __restrict__ pool,
                      const int32_t* __restrict__ tables, const int32_t* __restrict__ q_start,
                      const int32_t* __restrict__ seq_lens, const int32_t* __restrict__ slots, int num_seqs,
                      int kv_heads, int units_per_head,
                      int block_size, int max_blocks) {
  PdlWait();
  const int t = blockIdx.x;
  // The last sequence whose first row is <= t (empty sequences share their start with the next).
  int lo = 0, hi = num_seqs - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (q_start[mid] <= t) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  const int s = lo, first = q_start[s], n = q_start[s + 1] - first;
  if (t < first || t >= first + n) return;  // not a row of any sequence (malformed layout)
  const int pos = seq_lens[s] - n + (t - first);
  if (pos < 0 || pos / block_size >= max_blocks) return;
  const int b = pos / block_size, in_block = pos % block_size;
  const int64_t trow = slots != nullptr ? slots[s] : s;  // the sequence's table row
  const int per_side = kv_heads * units_per_head;
  const int idx = blockIdx.y * blockDim.x + threadIdx.x;
  if (idx >= 2 * per_side) return;
  const int side = idx >= per_side, rem = idx - side * per_side;
  const int g = rem / units_per_head, u = rem - g * units_per_head;
  const int32_t block = tables[((trow * 2 + side) * kv_heads + g) * max_blocks + b];
  if (block < 0) return;
  const U* row = (side ? v : k) + int64_t{t} * per_side;
  pool[(int64_t{block} * block_size + in_block) * units_per_head + u] = row[rem];
}

template <typename U>
void Launch(const Tensor& k, const Tensor& v, const PagedKv& kv, const BatchLayout& batch, int64_t head_bytes) {
  const int64_t rows = k.dim(0);
  const int units = static_cast<int>(head_bytes / sizeof(U));
  const int64_t per_row = int64_t{2} * kv.kv_heads * units;
  const int threads = RowThreads(per_row, 128);
  const dim3 grid(static_cast<unsigned>(rows), static_cast<unsigned>((per_row + threads - 1) / threads));
  LaunchPdl(PagedAppendKernel<U>, grid, threads, 0, CurrentStream(), static_cast<const U*>(k.raw()),
            static_cast<const U*>(v.raw()), static_cast<U*>(kv.pool.raw()), kv.tables.data<int32_t>(),
            batch.q_start.data<int32_t>(), batch.seq_lens.data<int32_t>(),
            batch.slots.defined() ? batch.slots.data<int32_t>() : nullptr, batch.num_seqs, kv.kv_heads, units,
            kv.block_size, kv.max_blocks);
}

}  // namespace

void PagedAppend(const Tensor& k, const Tensor& v, const PagedKv& kv, const BatchLayout& batch) {
  const int64_t rows = k.dim(0);
  if (rows == 0 || batch.num_seqs == 0 || kv.kv_heads == 0) return;
  if (k.dtype() != kv.pool.dtype() || v.dtype() != kv.pool.dtype() || v.dim(0) != rows ||
      k.dim(1) != int64_t{kv.kv_heads} * kv.pool.dim(2) || v.dim(1) != k.dim(1)) {
    std::fprintf(stderr, "chai: internal error in CUDA op PagedAppend: k %s, v %s, pool %s, kv_heads %d\n",
                 k.ShapeString().c_str(), v.ShapeString().c_str(), kv.pool.ShapeString().c_str(), kv.kv_heads);
    std::abort();
  }
  const int64_t head_bytes = kv.pool.dim(2) * static_cast<int64_t>(DTypeSize(kv.pool.dtype()));
  const std::initializer_list<const void*> ptrs = {k.raw(), v.raw(), kv.pool.raw()};
  if (head_bytes % 16 == 0 && Aligned(16, ptrs)) {
    Launch<uint4>(k, v, kv, batch, head_bytes);
  } else if (head_bytes % 8 == 0 && Aligned(8, ptrs)) {
    Launch<uint2>(k, v, kv, batch, head_bytes);
  } else if (head_bytes % 4 == 0 && Aligned(4, ptrs)) {
    Launch<uint32_t>(k, v, kv, batch, head_bytes);
  } else {
    Launch<uint16_t>(k, v, kv, batch, head_bytes);
  }
}

}  // namespace chai::cuda
