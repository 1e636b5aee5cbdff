#include "runtime/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <fstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "runtime/json.h"

namespace chai {
namespace {

// Headers of real checkpoints are a few hundred KB; anything past this is corrupt or hostile.
constexpr uint64_t kMaxHeaderBytes = 100u << 20;

}  // namespace

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  auto fail = [&](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", what));
  };
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return absl::NotFoundError(absl::StrCat("cannot open ", path, ": ", std::strerror(errno)));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    return fail("cannot stat");
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size < 8) {
    ::close(fd);
    return fail("truncated file (no header length)");
  }
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (map == MAP_FAILED) return fail("mmap failed");
  auto file = std::unique_ptr<SafetensorsFile>(new SafetensorsFile());
  file->path_ = path;
  file->mapping_ = std::shared_ptr<void>(map, [size](void* p) { ::munmap(p, size); });
  file->base_ = static_cast<const char*>(map);

  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | static_cast<unsigned char>(file->base_[i]);
  if (header_len > kMaxHeaderBytes) return fail(absl::StrCat("header length ", header_len, " is too large"));
  if (header_len > size - 8) return fail("truncated file (header runs past the end)");
  auto header = Json::Parse(absl::string_view(file->base_ + 8, header_len));
  if (!header.ok()) return fail(absl::StrCat("header is not valid JSON: ", header.status().message()));
  if (!header->is_object()) return fail("header is not a JSON object");
  const uint64_t data_start = 8 + header_len;
  const uint64_t data_size = size - data_start;

  for (const auto& [name, info] : header->as_object()) {
    if (name == "__metadata__") continue;
    auto bad = [&](absl::string_view what) { return fail(absl::StrCat("tensor '", name, "': ", what)); };
    if (!info.is_object()) return bad("entry is not an object");
    const Json* dtype_json = info.Find("dtype");
    const Json* shape_json = info.Find("shape");
    const Json* offsets_json = info.Find("data_offsets");
    if (!dtype_json || !dtype_json->is_string()) return bad("missing dtype");
    if (!shape_json || !shape_json->is_array()) return bad("missing shape");
    if (!offsets_json || !offsets_json->is_array() || offsets_json->as_array().size() != 2) {
      return bad("missing data_offsets");
    }
    auto dtype = ParseDType(dtype_json->as_string());
    if (!dtype.ok()) return bad(absl::StrCat("unknown dtype ", dtype_json->as_string()));
    Entry e;
    e.dtype = *dtype;
    uint64_t count = 1;
    for (const Json& d : shape_json->as_array()) {
      auto v = d.AsInt();
      if (!v.ok() || *v < 0) return bad("shape has a non-integer or negative dimension");
      e.shape.push_back(*v);
      count *= static_cast<uint64_t>(*v);
    }
    auto begin = offsets_json->as_array()[0].AsInt();
    auto end = offsets_json->as_array()[1].AsInt();
    if (!begin.ok() || !end.ok() || *begin < 0 || *end < *begin) return bad("invalid data_offsets");
    if (static_cast<uint64_t>(*end) > data_size) return bad("data_offsets out of range (file truncated?)");
    if (static_cast<uint64_t>(*end - *begin) != count * DTypeSize(e.dtype)) {
      return bad("data_offsets do not match shape and dtype");
    }
    e.offset = data_start + *begin;
    file->entries_.emplace(name, std::move(e));
  }
  return file;
}

std::vector<std::string> SafetensorsFile::Names() const {
  std::vector<std::string> names;
  for (const auto& [name, e] : entries_) names.push_back(name);
  return names;
}

absl::StatusOr<Tensor> SafetensorsFile::Get(const std::string& name) const {
  auto it = entries_.find(name);
  if (it == entries_.end()) return absl::NotFoundError(absl::StrCat(path_, ": missing tensor '", name, "'"));
  const Entry& e = it->second;
  return Tensor::Wrap(const_cast<char*>(base_ + e.offset), e.shape, e.dtype, Device::kCpu, mapping_);
}

absl::Status WriteSafetensors(const std::string& path,
                              const std::vector<std::pair<std::string, Tensor>>& tensors) {
  Json header = Json::MakeObject();
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    Json entry = Json::MakeObject();
    std::string dt = t.dtype() == DType::kF32 ? "F32" : t.dtype() == DType::kF16 ? "F16" : "BF16";
    entry.Set("dtype", dt);
    Json shape = Json::MakeArray();
    for (int64_t d : t.shape()) shape.Push(Json(d));
    entry.Set("shape", shape);
    Json offsets = Json::MakeArray();
    offsets.Push(Json(static_cast<int64_t>(offset)));
    offset += t.nbytes();
    offsets.Push(Json(static_cast<int64_t>(offset)));
    entry.Set("data_offsets", offsets);
    header.Set(name, entry);
  }
  std::string text = header.Dump();
  while (text.size() % 8 != 0) text.push_back(' ');
  std::ofstream out(path, std::ios::binary);
  if (!out) return absl::PermissionDeniedError(absl::StrCat("cannot write ", path));
  uint64_t len = text.size();
  char len_bytes[8];
  for (int i = 0; i < 8; ++i) len_bytes[i] = static_cast<char>((len >> (8 * i)) & 0xFF);
  out.write(len_bytes, 8);
  out.write(text.data(), text.size());
  for (const auto& [name, t] : tensors) out.write(static_cast<const char*>(t.raw()), t.nbytes());
  if (!out) return absl::DataLossError(absl::StrCat("failed writing ", path));
  return absl::OkStatus();
}

}  // namespace chai
