#include "parallel/mpi_communicator.h"

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "parallel/mpi_error.h"

namespace chai {
namespace {

absl::Status CheckHost(const Tensor& tensor, const char* op) {
  if (!tensor.defined()) return absl::InvalidArgumentError(absl::StrCat(op, ": undefined tensor"));
  if (tensor.device() != Device::kCpu) {
    return absl::FailedPreconditionError(
        absl::StrCat(op, ": the MPI communicator takes host tensors, got ", tensor.ShapeString(),
                     " on ", DeviceName(tensor.device()), " (device tensors go through NCCL)"));
  }
  return absl::OkStatus();
}

// In-place allreduce in pieces of at most INT_MAX elements (MPI counts are int).
absl::Status AllReduceInPlace(void* data, int64_t count, MPI_Datatype type, size_t element_size,
                              MPI_Comm comm) {
  char* bytes = static_cast<char*>(data);
  for (int64_t offset = 0; offset < count;) {
    int chunk = static_cast<int>(std::min<int64_t>(count - offset, INT_MAX));
    int rc = MPI_Allreduce(MPI_IN_PLACE, bytes + offset * element_size, chunk, type, MPI_SUM, comm);
    if (rc != MPI_SUCCESS) return MpiError(rc, "MPI_Allreduce");
    offset += chunk;
  }
  return absl::OkStatus();
}

class MpiCommunicator final : public Communicator {
 public:
  explicit MpiCommunicator(MPI_Comm comm) {
    int initialized = 0, finalized = 0;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    if (!initialized || finalized || MPI_Comm_dup(comm, &comm_) != MPI_SUCCESS) {
      std::fprintf(stderr, "chai: fatal: MakeMpiCommunicator needs an initialised MPI "
                           "(call Bootstrap first)\n");
      std::abort();
    }
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
  }

  ~MpiCommunicator() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Comm_free(&comm_);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }

  absl::Status AllReduceSum(Tensor* tensor) override {
    if (tensor == nullptr) return absl::InvalidArgumentError("AllReduceSum: null tensor");
    if (absl::Status s = CheckHost(*tensor, "AllReduceSum"); !s.ok()) return s;
    const int64_t n = tensor->numel();
    switch (tensor->dtype()) {
      case DType::kF32:
        return AllReduceInPlace(tensor->raw(), n, MPI_FLOAT, 4, comm_);
      case DType::kI32:
        return AllReduceInPlace(tensor->raw(), n, MPI_INT32_T, 4, comm_);
      case DType::kI64:
        return AllReduceInPlace(tensor->raw(), n, MPI_INT64_T, 8, comm_);
      case DType::kF16:
      case DType::kBF16: {
        // MPI has no half types: sum in fp32 and round once at the end.
        std::vector<float> wide(n);
        ConvertFloats(tensor->raw(), tensor->dtype(), wide.data(), DType::kF32, n);
        if (absl::Status s = AllReduceInPlace(wide.data(), n, MPI_FLOAT, 4, comm_); !s.ok()) {
          return s;
        }
        ConvertFloats(wide.data(), DType::kF32, tensor->raw(), tensor->dtype(), n);
        return absl::OkStatus();
      }
    }
    return absl::InvalidArgumentError(
        absl::StrCat("AllReduceSum: unsupported dtype ", DTypeName(tensor->dtype())));
  }

  absl::Status AllGatherColumns(const Tensor& local, Tensor* out) override {
    auto prepared = PrepareGatherColumns(
        local, size_, Device::kCpu, [](const Tensor& t) { return CheckHost(t, "AllGatherColumns"); }, out);
    if (!prepared.ok()) return prepared.status();
    const int64_t rows = *prepared;
    const size_t block = local.nbytes();
    if (block > static_cast<size_t>(INT_MAX)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "AllGatherColumns: ", local.ShapeString(), " is over 2 GiB per rank; gather in pieces"));
    }
    const int count = static_cast<int>(block);
    if (rows <= 1) {  // rank blocks are already the output's column blocks
      int rc = MPI_Allgather(local.raw(), count, MPI_BYTE, out->raw(), count, MPI_BYTE, comm_);
      return rc == MPI_SUCCESS ? absl::OkStatus() : MpiError(rc, "MPI_Allgather");
    }
    std::vector<char> gathered(block * size_);
    int rc = MPI_Allgather(local.raw(), count, MPI_BYTE, gathered.data(), count, MPI_BYTE, comm_);
    if (rc != MPI_SUCCESS) return MpiError(rc, "MPI_Allgather");
    // gathered is [size][rows][cols]; out is [rows][size][cols].
    const size_t row_bytes = block / rows;
    char* dst = static_cast<char*>(out->raw());
    for (int64_t row = 0; row < rows; ++row) {
      for (int r = 0; r < size_; ++r) {
        std::memcpy(dst + (row * size_ + r) * row_bytes, gathered.data() + r * block + row * row_bytes,
                    row_bytes);
      }
    }
    return absl::OkStatus();
  }

  absl::Status Broadcast(Tensor* tensor, int root) override {
    if (tensor == nullptr) return absl::InvalidArgumentError("Broadcast: null tensor");
    if (absl::Status s = CheckHost(*tensor, "Broadcast"); !s.ok()) return s;
    if (root < 0 || root >= size_) {
      return absl::InvalidArgumentError(
          absl::StrCat("Broadcast: root ", root, " not in [0, ", size_, ")"));
    }
    char* bytes = static_cast<char*>(tensor->raw());
    const size_t total = tensor->nbytes();
    for (size_t offset = 0; offset < total;) {
      int chunk = static_cast<int>(std::min<size_t>(total - offset, INT_MAX));
      int rc = MPI_Bcast(bytes + offset, chunk, MPI_BYTE, root, comm_);
      if (rc != MPI_SUCCESS) return MpiError(rc, "MPI_Bcast");
      offset += chunk;
    }
    return absl::OkStatus();
  }

  absl::Status Barrier() override {
    int rc = MPI_Barrier(comm_);
    return rc == MPI_SUCCESS ? absl::OkStatus() : MpiError(rc, "MPI_Barrier");
  }

  std::string Describe() const override { return "mpi (host tensors)"; }

 private:
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 1;
};

}  // namespace

std::unique_ptr<Communicator> MakeMpiCommunicator(MPI_Comm comm) {
  return std::make_unique<MpiCommunicator>(comm);
}

}  // namespace chai
