// The default (unfused) collectives of Communicator.
#include "parallel/communicator.h"

#include "kernels/ops.h"

namespace chai {

absl::Status Communicator::AllReduceAddNorm(Tensor* partial, Tensor* x, const Tensor& weight, const Tensor& bias,
                                            float eps, bool rms, Tensor* out) {
  if (absl::Status s = AllReduceSum(partial); !s.ok()) return s;
  if (rms) {
    ops::AddRmsNorm(x, *partial, weight, eps, out);
  } else {
    ops::AddLayerNorm(x, *partial, weight, bias, eps, out);
  }
  return absl::OkStatus();
}

}  // namespace chai
