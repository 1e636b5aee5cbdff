#include "runtime/tensor_source.h"

#include <filesystem>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kernels/cpu/parallel_for.h"
#include "runtime/json.h"

namespace chai {
namespace {

absl::Status CheckShape(const std::string& where, const std::string& name, const Tensor& t,
                        const std::vector<int64_t>& shape) {
  if (t.shape() == shape) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(where, ": tensor '", name, "' has shape [",
                                                 absl::StrJoin(t.shape(), ", "), "], expected [",
                                                 absl::StrJoin(shape, ", "), "]"));
}

class CheckpointSource : public TensorSource {
 public:
  CheckpointSource(std::string where, std::vector<std::unique_ptr<SafetensorsFile>> files,
                   std::map<std::string, int> index)
      : where_(std::move(where)), files_(std::move(files)), index_(std::move(index)) {}

  bool Has(const std::string& name) const override { return index_.count(name) > 0; }

  absl::StatusOr<Tensor> Get(const std::string& name, const std::vector<int64_t>& shape) const override {
    auto it = index_.find(name);
    if (it == index_.end()) return absl::NotFoundError(absl::StrCat(where_, ": missing tensor '", name, "'"));
    auto t = files_[it->second]->Get(name);
    if (!t.ok()) return t.status();
    if (t->dtype() != DType::kF32 && t->dtype() != DType::kF16 && t->dtype() != DType::kBF16) {
      return absl::InvalidArgumentError(absl::StrCat(where_, ": tensor '", name, "' has non-float dtype ",
                                                     DTypeName(t->dtype())));
    }
    if (auto s = CheckShape(files_[it->second]->path(), name, *t, shape); !s.ok()) return s;
    return t;
  }

  std::string Describe() const override { return where_; }

 private:
  std::string where_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, int> index_;  // tensor name -> file
};

absl::StatusOr<std::unique_ptr<TensorSource>> OpenFiles(const std::string& where,
                                                        const std::vector<std::string>& paths) {
  std::vector<std::unique_ptr<SafetensorsFile>> files;
  std::map<std::string, int> index;
  for (const std::string& p : paths) {
    auto f = SafetensorsFile::Open(p);
    if (!f.ok()) return f.status();
    for (const std::string& name : (*f)->Names()) index[name] = static_cast<int>(files.size());
    files.push_back(std::move(*f));
  }
  return std::unique_ptr<TensorSource>(new CheckpointSource(where, std::move(files), std::move(index)));
}

}  // namespace

absl::StatusOr<std::unique_ptr<TensorSource>> OpenCheckpoint(const std::string& path) {
  namespace fs = std::filesystem;
  if (!fs::exists(path)) return absl::NotFoundError(absl::StrCat("checkpoint not found: ", path));
  if (!fs::is_directory(path)) return OpenFiles(path, {path});
  const std::string single = path + "/model.safetensors";
  const std::string index_path = path + "/model.safetensors.index.json";
  if (fs::exists(index_path)) {
    auto index = ReadJsonFile(index_path);
    if (!index.ok()) return index.status();
    const Json* map = index->Find("weight_map");
    if (map == nullptr || !map->is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(index_path, ": missing \"weight_map\" object"));
    }
    std::vector<std::string> shards;
    for (const auto& [name, file] : map->as_object()) {
      if (!file.is_string() || file.as_string().find('/') != std::string::npos) {
        return absl::InvalidArgumentError(absl::StrCat(index_path, ": bad shard name for '", name, "'"));
      }
      std::string shard = path + "/" + file.as_string();
      if (std::find(shards.begin(), shards.end(), shard) == shards.end()) shards.push_back(shard);
    }
    return OpenFiles(path, shards);
  }
  if (fs::exists(single)) return OpenFiles(path, {single});
  return absl::NotFoundError(absl::StrCat(path, ": no model.safetensors or model.safetensors.index.json"));
}

namespace {

// SplitMix64: a tiny, well-mixed generator; one per row keeps slices independent.
uint64_t SplitMix(uint64_t* state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t HashName(const std::string& name) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (unsigned char c : name) h = (h ^ c) * 1099511628211ull;
  return h;
}

class RandomSource : public TensorSource {
 public:
  explicit RandomSource(uint64_t seed) : seed_(seed) {}
  bool Has(const std::string&) const override { return true; }
  std::string Describe() const override { return absl::StrCat("random weights (seed ", seed_, ")"); }

  absl::StatusOr<Tensor> Get(const std::string& name, const std::vector<int64_t>& shape) const override {
    Tensor t = Tensor::Empty(shape, DType::kF32);
    const int64_t rows = shape.empty() ? 1 : shape[0];
    const int64_t cols = rows ? t.numel() / rows : 0;
    const bool is_norm = absl::StrContains(name, "norm") && absl::EndsWith(name, ".weight");
    const bool is_bias = absl::EndsWith(name, ".bias");
    // Uniform(-a, a) has std a/sqrt(3): a = 0.02 * sqrt(3) matches HF's N(0, 0.02) in scale.
    const float amp = is_bias ? 0.01f : 0.0346410162f;
    const uint64_t name_hash = HashName(name);
    // Rows are independent streams, so threads can fill them in any order (large random
    // models take seconds, not minutes).
    cpu::ParallelFor(rows, 64, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        float* row = t.data<float>() + r * cols;
        if (is_norm) {
          std::fill(row, row + cols, 1.f);
          continue;
        }
        uint64_t state = seed_ ^ name_hash ^ (static_cast<uint64_t>(r) * 0xD1B54A32D192ED03ull);
        for (int64_t c = 0; c < cols; ++c) {
          const double u = (SplitMix(&state) >> 11) * (1.0 / 9007199254740992.0);  // [0, 1)
          row[c] = static_cast<float>((2.0 * u - 1.0) * amp);
        }
      }
    });
    return t;
  }

 private:
  uint64_t seed_;
};

}  // namespace

std::unique_ptr<TensorSource> MakeRandomSource(uint64_t seed) { return std::make_unique<RandomSource>(seed); }

}  // namespace chai
