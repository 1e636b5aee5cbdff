// Where weights come from: a Hugging Face checkpoint (safetensors, single or sharded) or a
// deterministic random generator. Both hand out host tensors by Hugging Face name, with the
// shape checked against what the model config implies.
#ifndef CHAI_RUNTIME_TENSOR_SOURCE_H_
#define CHAI_RUNTIME_TENSOR_SOURCE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/tensor.h"
#include "runtime/safetensors.h"

namespace chai {

using Ranges = std::vector<std::pair<int64_t, int64_t>>;  // [begin, end) blocks of rows or columns

class TensorSource {
 public:
  virtual ~TensorSource() = default;
  virtual bool Has(const std::string& name) const = 0;
  // Host tensor (any float dtype) of exactly `shape`; an error names the tensor otherwise.
  virtual absl::StatusOr<Tensor> Get(const std::string& name, const std::vector<int64_t>& shape) const = 0;
  // The rows in `rows` (all when empty), and of a 2-D tensor the columns in `cols` (all when
  // empty), of the tensor Get(name, shape) would return, blocks in the order given, converted to
  // `dtype` (as Tensor::Cast would). The default slices Get's tensor and casts it; sources that
  // can make a slice alone (random weights) override it, so a tensor-parallel rank builds only
  // its share, straight in the dtype it will keep.
  virtual absl::StatusOr<Tensor> GetSlice(const std::string& name, const std::vector<int64_t>& shape,
                                          const Ranges& rows, const Ranges& cols,
                                          DType dtype = DType::kF32) const;
  virtual std::string Describe() const = 0;
};

// Rows of `full` in the given blocks, as one tensor (a view when it is one block).
Tensor GatherRows(const Tensor& full, const Ranges& ranges);
// Columns of a 2-D tensor in the given blocks, in their order (`full` itself for the one block
// of every column).
Tensor GatherCols(const Tensor& full, const Ranges& ranges);

// A checkpoint directory (model.safetensors, or model.safetensors.index.json with shards) or
// a single .safetensors file.
absl::StatusOr<std::unique_ptr<TensorSource>> OpenCheckpoint(const std::string& path);

// Deterministic random weights: each row is drawn from a generator seeded by (seed, name,
// row), so any slice of a tensor can be made without the rest and equals the full tensor's.
// Norm weights are 1, biases small, other weights uniform with std 0.02 (like HF's init).
std::unique_ptr<TensorSource> MakeRandomSource(uint64_t seed);

}  // namespace chai

#endif  // CHAI_RUNTIME_TENSOR_SOURCE_H_
