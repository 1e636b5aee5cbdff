#include "runtime/tokenizer/normalizer.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "runtime/tokenizer/unicode.h"

namespace chai {

void ReplaceAll(std::string* text, absl::string_view from, absl::string_view to) {
  if (from.empty() || text->find(from.data(), 0, from.size()) == std::string::npos) return;
  std::string out;
  out.reserve(text->size());
  size_t pos = 0;
  while (true) {
    const size_t hit = text->find(from.data(), pos, from.size());
    if (hit == std::string::npos) break;
    out.append(*text, pos, hit - pos);
    out.append(to.data(), to.size());
    pos = hit + from.size();
  }
  out.append(*text, pos, std::string::npos);
  *text = std::move(out);
}

namespace {

class PrependNormalizer : public Normalizer {
 public:
  explicit PrependNormalizer(std::string prefix) : prefix_(std::move(prefix)) {}
  void Normalize(std::string* text) const override {
    if (!text->empty()) text->insert(0, prefix_);
  }

 private:
  std::string prefix_;
};

class ReplaceNormalizer : public Normalizer {
 public:
  ReplaceNormalizer(std::string from, std::string to) : from_(std::move(from)), to_(std::move(to)) {}
  void Normalize(std::string* text) const override { ReplaceAll(text, from_, to_); }

 private:
  std::string from_, to_;
};

class StripNormalizer : public Normalizer {
 public:
  StripNormalizer(bool left, bool right) : left_(left), right_(right) {}
  void Normalize(std::string* text) const override {
    size_t begin = 0, end = text->size(), len;
    if (left_) {
      while (begin < end && IsWhiteSpace(DecodeUtf8(*text, begin, &len))) begin += len;
    }
    if (right_) {
      while (end > begin) {
        size_t start = end - 1;  // back up to the first byte of the last character
        while (start > begin && (static_cast<unsigned char>((*text)[start]) & 0xC0) == 0x80) --start;
        if (!IsWhiteSpace(DecodeUtf8(*text, start, &len)) || start + len != end) break;
        end = start;
      }
    }
    *text = text->substr(begin, end - begin);
  }

 private:
  bool left_, right_;
};

class SequenceNormalizer : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> parts) : parts_(std::move(parts)) {}
  void Normalize(std::string* text) const override {
    for (const auto& p : parts_) p->Normalize(text);
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> parts_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Normalizer>> ParseNormalizer(const Json& json) {
  if (json.is_null()) return std::unique_ptr<Normalizer>();
  if (!json.is_object()) return absl::InvalidArgumentError("normalizer is not an object");
  const std::string type = GetStringOr(json, "type", "");
  if (type == "Prepend") {
    auto prefix = GetString(json, "prepend");
    if (!prefix.ok()) return absl::InvalidArgumentError(absl::StrCat("Prepend normalizer: ", prefix.status().message()));
    return std::unique_ptr<Normalizer>(new PrependNormalizer(*prefix));
  }
  if (type == "Replace") {
    const Json* pattern = json.Find("pattern");
    const Json* from = pattern ? pattern->Find("String") : nullptr;
    if (pattern && pattern->Find("Regex")) {
      return absl::UnimplementedError("Replace normalizer with a Regex pattern is not supported");
    }
    auto to = GetString(json, "content");
    if (from == nullptr || !from->is_string() || from->as_string().empty() || !to.ok()) {
      return absl::InvalidArgumentError("Replace normalizer needs pattern.String (not empty) and content");
    }
    return std::unique_ptr<Normalizer>(new ReplaceNormalizer(from->as_string(), *to));
  }
  if (type == "Strip") {
    return std::unique_ptr<Normalizer>(
        new StripNormalizer(GetBoolOr(json, "strip_left", true), GetBoolOr(json, "strip_right", true)));
  }
  if (type == "Sequence") {
    const Json* list = json.Find("normalizers");
    if (list == nullptr || !list->is_array()) {
      return absl::InvalidArgumentError("Sequence normalizer needs a \"normalizers\" array");
    }
    std::vector<std::unique_ptr<Normalizer>> parts;
    for (const Json& item : list->as_array()) {
      auto part = ParseNormalizer(item);
      if (!part.ok()) return part.status();
      if (*part) parts.push_back(std::move(*part));
    }
    return std::unique_ptr<Normalizer>(new SequenceNormalizer(std::move(parts)));
  }
  if (type.empty()) return absl::InvalidArgumentError("normalizer has no \"type\"");
  return absl::UnimplementedError(absl::StrCat("normalizer type \"", type, "\" is not supported"));
}

}  // namespace chai
