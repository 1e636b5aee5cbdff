#include "runtime/tensor_source.h"

#include <algorithm>
#include <cstring>
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

Tensor GatherRows(const Tensor& full, const Ranges& ranges) {
  if (ranges.size() == 1) return full.Rows(ranges[0].first, ranges[0].second);
  int64_t rows = 0;
  for (auto [b, e] : ranges) rows += e - b;
  std::vector<int64_t> shape = full.shape();
  shape[0] = rows;
  Tensor out = Tensor::Empty(shape, full.dtype());
  const size_t row_bytes = full.nbytes() / full.dim(0);
  char* dst = static_cast<char*>(out.raw());
  for (auto [b, e] : ranges) {
    std::memcpy(dst, static_cast<const char*>(full.raw()) + b * row_bytes, (e - b) * row_bytes);
    dst += (e - b) * row_bytes;
  }
  return out;
}

Tensor GatherCols(const Tensor& full, const Ranges& ranges) {
  if (ranges.size() == 1 && ranges[0].first == 0 && ranges[0].second == full.dim(1)) return full;
  int64_t cols = 0;
  for (auto [b, e] : ranges) cols += e - b;
  Tensor out = Tensor::Empty({full.dim(0), cols}, full.dtype());
  const size_t es = DTypeSize(full.dtype());
  for (int64_t r = 0; r < full.dim(0); ++r) {
    char* dst = static_cast<char*>(out.raw()) + r * cols * es;
    const char* src = static_cast<const char*>(full.raw()) + r * full.dim(1) * es;
    for (auto [b, e] : ranges) {
      std::memcpy(dst, src + b * es, (e - b) * es);
      dst += (e - b) * es;
    }
  }
  return out;
}

absl::StatusOr<Tensor> TensorSource::GetSlice(const std::string& name, const std::vector<int64_t>& shape,
                                              const Ranges& rows, const Ranges& cols, DType dtype) const {
  auto full = Get(name, shape);
  if (!full.ok()) return full.status();
  Tensor t = *full;
  if (!rows.empty()) t = GatherRows(t, rows);
  if (!cols.empty()) t = GatherCols(t, cols);
  return t.Cast(dtype);
}

namespace {

// SplitMix64: a tiny, well-mixed generator; one per row keeps slices independent.
constexpr uint64_t kSplitMixGamma = 0x9E3779B97F4A7C15ull;  // the state's step per value

uint64_t SplitMix(uint64_t* state) {
  uint64_t z = (*state += kSplitMixGamma);
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
    return GetSlice(name, shape, {}, {}, DType::kF32);
  }

  // Only the requested rows and columns are drawn: a row's stream is seeded by (seed, name,
  // row) and SplitMix's state advances by a constant per value, so column c's value is reached
  // by moving the state c steps ahead. The slice equals the same slice of the full tensor.
  absl::StatusOr<Tensor> GetSlice(const std::string& name, const std::vector<int64_t>& shape, const Ranges& rows,
                                  const Ranges& cols, DType dtype) const override {
    if (!cols.empty() && shape.size() != 2) {
      return absl::InvalidArgumentError(absl::StrCat(name, ": a column slice needs a 2-D tensor"));
    }
    const int64_t all_rows = shape.empty() ? 1 : shape[0];
    int64_t numel = 1;
    for (int64_t d : shape) numel *= d;
    const int64_t all_cols = all_rows ? numel / all_rows : 0;
    const Ranges row_ranges = rows.empty() ? Ranges{{0, all_rows}} : rows;
    const Ranges col_ranges = cols.empty() ? Ranges{{0, all_cols}} : cols;
    std::vector<int64_t> row_ids;
    for (auto [b, e] : row_ranges)
      for (int64_t r = b; r < e; ++r) row_ids.push_back(r);
    int64_t out_cols = 0;
    for (auto [b, e] : col_ranges) out_cols += e - b;
    std::vector<int64_t> out_shape = shape;
    if (!out_shape.empty()) out_shape[0] = static_cast<int64_t>(row_ids.size());
    if (out_shape.size() == 2) out_shape[1] = out_cols;
    if (dtype != DType::kF32 && dtype != DType::kF16 && dtype != DType::kBF16) {
      return absl::InvalidArgumentError(absl::StrCat(name, ": random weights are floats, not ", DTypeName(dtype)));
    }
    // Drawn in fp32 a row at a time and converted on the spot: a half-precision load never holds
    // (or page-faults in) the fp32 copy of a tensor, and the values are those of Cast(dtype).
    Tensor t = Tensor::Empty(out_shape, dtype);
    const size_t out_size = DTypeSize(dtype);
    const bool is_norm = absl::StrContains(name, "norm") && absl::EndsWith(name, ".weight");
    const bool is_bias = absl::EndsWith(name, ".bias");
    // Uniform(-a, a) has std a/sqrt(3): a = 0.02 * sqrt(3) matches HF's N(0, 0.02) in scale.
    const float amp = is_bias ? 0.01f : 0.0346410162f;
    const uint64_t name_hash = HashName(name);
    // Rows are independent streams, so threads can fill them in any order (large random
    // models take seconds, not minutes).
    cpu::ParallelFor(static_cast<int64_t>(row_ids.size()), 64, [&](int64_t begin, int64_t end) {
      std::vector<float> row(static_cast<size_t>(out_cols));
      for (int64_t i = begin; i < end; ++i) {
        float* out = row.data();
        if (is_norm) {
          std::fill(out, out + out_cols, 1.f);
        } else {
          const uint64_t row_state = seed_ ^ name_hash ^ (static_cast<uint64_t>(row_ids[i]) * 0xD1B54A32D192ED03ull);
          for (auto [b, e] : col_ranges) {
            uint64_t state = row_state + static_cast<uint64_t>(b) * kSplitMixGamma;  // b values ahead
            for (int64_t c = b; c < e; ++c) {
              const double u = (SplitMix(&state) >> 11) * (1.0 / 9007199254740992.0);  // [0, 1)
              *out++ = static_cast<float>((2.0 * u - 1.0) * amp);
            }
          }
        }
        ConvertFloats(row.data(), DType::kF32, static_cast<char*>(t.raw()) + i * out_cols * out_size, dtype,
                      static_cast<size_t>(out_cols));
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
