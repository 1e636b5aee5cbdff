// The communicator of a world of one: every collective is the identity.
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "parallel/communicator.h"

namespace chai {
namespace {

class SingleCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }

  absl::Status AllReduceSum(Tensor* tensor) override {
    if (tensor == nullptr || !tensor->defined()) {
      return absl::InvalidArgumentError("AllReduceSum: undefined tensor");
    }
    return absl::OkStatus();
  }

  // With one rank the gathered tensor is `local` itself; `out` may be undefined (then it is
  // allocated like `local`) or must have local's shape, dtype and device.
  absl::Status AllGatherColumns(const Tensor& local, Tensor* out) override {
    const Device device = local.device();
    auto same_place = [device](const Tensor& t) {
      if (!t.defined()) return absl::InvalidArgumentError("AllGatherColumns: undefined tensor");
      if (t.device() == device) return absl::OkStatus();
      return absl::InvalidArgumentError(absl::StrCat("AllGatherColumns: ", t.ShapeString(), " on ",
                                                     DeviceName(t.device()), ", the input is on ", DeviceName(device)));
    };
    if (auto prepared = PrepareGatherColumns(local, 1, device, same_place, out); !prepared.ok()) return prepared.status();
    if (out->raw() != local.raw()) CopyTensor(local, out);
    return absl::OkStatus();
  }

  absl::Status Broadcast(Tensor* tensor, int root) override {
    if (tensor == nullptr || !tensor->defined()) {
      return absl::InvalidArgumentError("Broadcast: undefined tensor");
    }
    if (root != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("Broadcast: root ", root, " in a world of size 1"));
    }
    return absl::OkStatus();
  }

  absl::Status Barrier() override { return absl::OkStatus(); }
  std::string Describe() const override { return "single process"; }
};

}  // namespace

std::unique_ptr<Communicator> MakeSingleCommunicator() {
  return std::make_unique<SingleCommunicator>();
}

}  // namespace chai
