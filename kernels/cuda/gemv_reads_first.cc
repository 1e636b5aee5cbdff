// ops::LinearReadsFirst on CUDA: which weight bytes a decode GEMV streams first, from the grid it
// will launch (gemv_plan.h), for the L2 prefetch hint of the kernel before it (kernels/l2_prefetch.h).
#include <cstdint>

#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/gemv_plan.h"
#include "kernels/cuda/internal.h"
#include "kernels/gemv_reads_first_plan.h"

namespace chai::cuda {

// The first bytes of W that the decode GEMV of x * weight^T streams (ops::LinearReadsFirst): the
// grid arithmetic of gemv_grid::ReadsFirst (kernels/gemv_reads_first_plan.h, where the two forms
// are explained) for the configuration this GEMV will launch. The configuration is the plain
// Linear's for kStore (QkvLinearAppend and the fused kStore launch LinearFused's, the same unless
// CHAI_GEMV_VARIANT forces one without fusions: a speed hint only).
L2Prefetch GemvReadsFirst(const Tensor& x, const Tensor& weight, ops::LinearOutput output, int64_t budget,
                          L2HintForm one_wave) {
  if (budget < 16 || weight.rank() != 2 || x.rank() != 2 || !GemvApplies(x, weight)) return L2Prefetch{};
  if (!CopyEngineDevice()) return L2Prefetch{};  // no bulk prefetch to issue it with
  const int64_t tokens = x.dim(0), k = x.dim(1), n = weight.dim(0);
  if (tokens == 0 || n == 0) return L2Prefetch{};
  // The GEMV this hint is for will find its first bytes in L2: its configuration is the hinted one.
  const GemvShape v = GemvLaunchShape(tokens, k, n, output != ops::LinearOutput::kStore, /*first_bytes_in_l2=*/true);
  const gemv_grid::Config c{v.warps, v.r, v.u, v.min_blocks, v.min_blocks};
  return gemv_grid::ReadsFirst(weight.raw(), n, k, output == ops::LinearOutput::kSiluMul, c, SmCount(), budget,
                               one_wave);
}

}  // namespace chai::cuda
