// The decode GEMV's launch plan, for host code outside gemv.cu that must know what a launch will
// stream (gemv_reads_first.cc: the L2 prefetch hint of a GEMV's first weights).
#ifndef CHAI_KERNELS_CUDA_GEMV_PLAN_H_
#define CHAI_KERNELS_CUDA_GEMV_PLAN_H_

#include <cstdint>

#include "kernels/gemv_grid.h"

namespace chai::cuda {

// A GEMV's grid (kernels/gemv_grid.h) on this device's SMs.
using GemvGrid = gemv_grid::Grid;
GemvGrid PlanGrid(int64_t n, int64_t k, bool paired, int r, int u, int warps, int min_blocks);

// The configuration's template shape (gemv_kernel.cuh: warps per CTA, r * 16 rows per CTA, u steps
// per warp iteration, CTAs per SM) that Linear's GEMV (fused = false) or LinearFused's would launch
// on T tokens of K over N weight rows; first_bytes_in_l2 as ops::LinearFusion's.
struct GemvShape {
  int warps, r, u, min_blocks;
};
GemvShape GemvLaunchShape(int64_t tokens, int64_t k, int64_t n, bool fused, bool first_bytes_in_l2);

}  // namespace chai::cuda

#endif  // CHAI_KERNELS_CUDA_GEMV_PLAN_H_
