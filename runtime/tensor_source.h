// Where weights come from: a Hugging Face checkpoint (safetensors, single or sharded) or a
// deterministic random generator. Both hand out host tensors by Hugging Face name, with the
// shape checked against what the model config implies.
#ifndef CHAI_RUNTIME_TENSOR_SOURCE_H_
#define CHAI_RUNTIME_TENSOR_SOURCE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/tensor.h"
#include "runtime/safetensors.h"

namespace chai {

class TensorSource {
 public:
  virtual ~TensorSource() = default;
  virtual bool Has(const std::string& name) const = 0;
  // Host tensor (any float dtype) of exactly `shape`; an error names the tensor otherwise.
  virtual absl::StatusOr<Tensor> Get(const std::string& name, const std::vector<int64_t>& shape) const = 0;
  virtual std::string Describe() const = 0;
};

// A checkpoint directory (model.safetensors, or model.safetensors.index.json with shards) or
// a single .safetensors file.
absl::StatusOr<std::unique_ptr<TensorSource>> OpenCheckpoint(const std::string& path);

// Deterministic random weights: each row is drawn from a generator seeded by (seed, name,
// row), so any slice of a tensor can be made without the rest and equals the full tensor's.
// Norm weights are 1, biases small, other weights uniform with std 0.02 (like HF's init).
std::unique_ptr<TensorSource> MakeRandomSource(uint64_t seed);

}  // namespace chai

#endif  // CHAI_RUNTIME_TENSOR_SOURCE_H_
