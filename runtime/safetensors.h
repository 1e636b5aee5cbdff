// Memory-mapped safetensors files: an 8-byte little-endian header length, a JSON header
// {name: {dtype, shape, data_offsets: [begin, end]}}, then the tensor bytes.
//
// Every field is checked against the file before any byte is read, so a truncated or hostile
// file ends in an error naming the file and the problem, never in a crash.
#ifndef CHAI_RUNTIME_SAFETENSORS_H_
#define CHAI_RUNTIME_SAFETENSORS_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/tensor.h"

namespace chai {

class SafetensorsFile {
 public:
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);

  const std::string& path() const { return path_; }
  bool Has(const std::string& name) const { return entries_.count(name) > 0; }
  std::vector<std::string> Names() const;
  // A host tensor viewing the mapped bytes (in the file's dtype); keeps the mapping alive.
  absl::StatusOr<Tensor> Get(const std::string& name) const;

 private:
  struct Entry {
    DType dtype;
    std::vector<int64_t> shape;
    size_t offset;  // from the start of the file
  };
  std::string path_;
  std::shared_ptr<void> mapping_;  // munmaps on release
  const char* base_ = nullptr;
  std::map<std::string, Entry> entries_;
};

// Writes tensors (host, any float dtype) as a safetensors file. Used by tests and tools.
absl::Status WriteSafetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors);

}  // namespace chai

#endif  // CHAI_RUNTIME_SAFETENSORS_H_
