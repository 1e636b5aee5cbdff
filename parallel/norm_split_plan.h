// How the split all-reduce + norm (ipc_allreduce_norm_split.cu) shares a message of `groups`
// 16-byte groups (rows x vecs) over a grid of `blocks`: block b owns the contiguous groups
// [b * chunk, (b + 1) * chunk), clipped to the message, the same on every rank; each block counts
// itself in once on every row its groups touch, and a row's last arrival normalises the row, so a
// row's count must equal the number of blocks that touch it. CUDA-free, so the CPU tests check the
// arithmetic (tests/unit/norm_split_plan_test.cc).
#ifndef CHAI_PARALLEL_NORM_SPLIT_PLAN_H_
#define CHAI_PARALLEL_NORM_SPLIT_PLAN_H_

#include <cstdint>

#ifdef __CUDACC__
#define CHAI_SPLIT_HD __host__ __device__ __forceinline__
#else
#define CHAI_SPLIT_HD inline
#endif

namespace chai::norm_split {

// A half-open range [begin, end) of groups or rows; empty when begin >= end.
struct Range {
  int64_t begin = 0, end = 0;
};

// Groups a block owns (the last blocks may own fewer, or none).
CHAI_SPLIT_HD int64_t Chunk(int64_t groups, int blocks) { return (groups + blocks - 1) / blocks; }

CHAI_SPLIT_HD Range Owned(int64_t groups, int blocks, int block) {
  const int64_t chunk = Chunk(groups, blocks);
  const int64_t begin = block * chunk < groups ? block * chunk : groups;
  return Range{begin, begin + chunk < groups ? begin + chunk : groups};
}

// The rows the groups `owned` fall in (of `vecs` groups each); empty for an empty range.
CHAI_SPLIT_HD Range RowsTouched(Range owned, int64_t vecs) {
  if (owned.begin >= owned.end) return Range{};
  return Range{owned.begin / vecs, (owned.end - 1) / vecs + 1};
}

// How many blocks own groups of row `row`: those from the one holding its first group to the one
// holding its last (the owned ranges are contiguous and in block order).
CHAI_SPLIT_HD int Arrivals(int64_t row, int64_t vecs, int64_t chunk) {
  return static_cast<int>(((row + 1) * vecs - 1) / chunk - row * vecs / chunk + 1);
}

}  // namespace chai::norm_split

#undef CHAI_SPLIT_HD

#endif  // CHAI_PARALLEL_NORM_SPLIT_PLAN_H_
