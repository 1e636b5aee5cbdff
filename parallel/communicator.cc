// The default (unfused) collectives of Communicator.
#include "parallel/communicator.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kernels/ops.h"

namespace chai {

absl::Status Communicator::AllReduceAddNorm(Tensor* partial, Tensor* x, const Tensor& weight, const Tensor& bias,
                                            float eps, bool rms, Tensor* out, const L2Prefetch& then) {
  if (absl::Status s = AllReduceSum(partial); !s.ok()) return s;
  if (rms) {
    ops::AddRmsNorm(x, *partial, weight, eps, out, then);
  } else {
    ops::AddLayerNorm(x, *partial, weight, bias, eps, out, then);
  }
  return absl::OkStatus();
}

bool Communicator::AddNormMirror(int64_t /*rows*/, int64_t /*cols*/, DType /*dtype*/, PeerMirror* /*mirror*/) const {
  return false;
}

absl::Status Communicator::AllReducePushedAddNorm(Tensor* /*partial*/, Tensor* /*x*/, const Tensor& /*weight*/,
                                                  const Tensor& /*bias*/, float /*eps*/, bool /*rms*/, Tensor* /*out*/,
                                                  const L2Prefetch& /*then*/) {
  return absl::UnimplementedError(absl::StrCat("AllReducePushedAddNorm: ", Describe(), " has no pushed all-reduce"));
}

absl::StatusOr<int64_t> PrepareGatherColumns(const Tensor& local, int world, Device device,
                                             absl::FunctionRef<absl::Status(const Tensor&)> check_place, Tensor* out) {
  if (out == nullptr) return absl::InvalidArgumentError("AllGatherColumns: null output");
  if (absl::Status s = check_place(local); !s.ok()) return s;
  if (local.rank() < 1) return absl::InvalidArgumentError("AllGatherColumns: scalar input");
  std::vector<int64_t> shape = local.shape();
  const int64_t cols = shape.back();
  shape.back() = cols * world;
  if (!out->defined()) {
    *out = Tensor::Empty(shape, local.dtype(), device);
  } else {
    if (absl::Status s = check_place(*out); !s.ok()) return s;
    if (out->shape() != shape || out->dtype() != local.dtype()) {
      return absl::InvalidArgumentError(absl::StrCat("AllGatherColumns: output is ", out->ShapeString(), ", expected [",
                                                     absl::StrJoin(shape, ", "), "] ", DTypeName(local.dtype()),
                                                     " for input ", local.ShapeString(), " and world size ", world));
    }
    if (world > 1 && out->raw() == local.raw()) {
      return absl::InvalidArgumentError("AllGatherColumns: output aliases the input");
    }
  }
  return cols == 0 ? 0 : local.numel() / cols;
}

}  // namespace chai
