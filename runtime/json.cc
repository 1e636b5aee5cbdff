#include "runtime/json.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "runtime/tokenizer/unicode.h"  // AppendUtf8

namespace chai {

// Recursive-descent parser over a string_view; errors carry the byte offset.
class JsonParser {
 public:
  explicit JsonParser(absl::string_view text) : text_(text) {}

  absl::StatusOr<Json> ParseDocument() {
    Json value;
    if (auto s = ParseValue(&value, 0); !s.ok()) return s;
    SkipSpace();
    if (pos_ != text_.size()) return Error("unexpected text after the JSON value");
    return value;
  }

 private:
  static constexpr int kMaxDepth = 256;

  absl::Status Error(absl::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat("invalid JSON at byte ", pos_, ": ", what));
  }

  void SkipSpace() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\n' ||
                                   text_[pos_] == '\r' || text_[pos_] == '\t')) {
      ++pos_;
    }
  }

  bool Consume(absl::string_view word) {
    if (text_.substr(pos_, word.size()) == word) {
      pos_ += word.size();
      return true;
    }
    return false;
  }

  absl::Status ParseValue(Json* out, int depth) {
    if (depth > kMaxDepth) return Error("nesting too deep");
    SkipSpace();
    if (pos_ >= text_.size()) return Error("unexpected end of input");
    char c = text_[pos_];
    if (c == '{') return ParseObject(out, depth);
    if (c == '[') return ParseArray(out, depth);
    if (c == '"') {
      out->type_ = Json::Type::kString;
      return ParseString(&out->string_);
    }
    if (Consume("true")) {
      *out = Json(true);
      return absl::OkStatus();
    }
    if (Consume("false")) {
      *out = Json(false);
      return absl::OkStatus();
    }
    if (Consume("null")) {
      *out = Json();
      return absl::OkStatus();
    }
    if (c == '-' || (c >= '0' && c <= '9')) return ParseNumber(out);
    // Python's json writes these for non-finite floats; accept them on read.
    if (Consume("NaN")) {
      *out = Json(std::nan(""));
      return absl::OkStatus();
    }
    if (Consume("Infinity")) {
      *out = Json(HUGE_VAL);
      return absl::OkStatus();
    }
    return Error("unexpected character");
  }

  absl::Status ParseNumber(Json* out) {
    size_t start = pos_;
    if (text_[pos_] == '-') {
      ++pos_;
      if (Consume("Infinity")) {
        *out = Json(-HUGE_VAL);
        return absl::OkStatus();
      }
    }
    auto digits = [&] {
      size_t s = pos_;
      while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') ++pos_;
      return pos_ > s;
    };
    if (!digits()) return Error("bad number");
    if (pos_ < text_.size() && text_[pos_] == '.') {
      ++pos_;
      if (!digits()) return Error("bad number fraction");
    }
    if (pos_ < text_.size() && (text_[pos_] == 'e' || text_[pos_] == 'E')) {
      ++pos_;
      if (pos_ < text_.size() && (text_[pos_] == '+' || text_[pos_] == '-')) ++pos_;
      if (!digits()) return Error("bad number exponent");
    }
    std::string literal(text_.substr(start, pos_ - start));
    *out = Json(std::strtod(literal.c_str(), nullptr));
    return absl::OkStatus();
  }

  absl::Status ParseHex4(uint32_t* cp) {
    if (pos_ + 4 > text_.size()) return Error("truncated \\u escape");
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      char h = text_[pos_++];
      v <<= 4;
      if (h >= '0' && h <= '9') v |= h - '0';
      else if (h >= 'a' && h <= 'f') v |= h - 'a' + 10;
      else if (h >= 'A' && h <= 'F') v |= h - 'A' + 10;
      else return Error("bad \\u escape");
    }
    *cp = v;
    return absl::OkStatus();
  }

  absl::Status ParseString(std::string* out) {
    ++pos_;  // opening quote
    out->clear();
    while (true) {
      if (pos_ >= text_.size()) return Error("unterminated string");
      char c = text_[pos_++];
      if (c == '"') return absl::OkStatus();
      if (static_cast<unsigned char>(c) < 0x20) return Error("control character in string");
      if (c != '\\') {
        out->push_back(c);
        continue;
      }
      if (pos_ >= text_.size()) return Error("unterminated escape");
      char e = text_[pos_++];
      switch (e) {
        case '"': out->push_back('"'); break;
        case '\\': out->push_back('\\'); break;
        case '/': out->push_back('/'); break;
        case 'b': out->push_back('\b'); break;
        case 'f': out->push_back('\f'); break;
        case 'n': out->push_back('\n'); break;
        case 'r': out->push_back('\r'); break;
        case 't': out->push_back('\t'); break;
        case 'u': {
          uint32_t cp = 0;
          if (auto s = ParseHex4(&cp); !s.ok()) return s;
          if (cp >= 0xD800 && cp <= 0xDBFF && text_.substr(pos_, 2) == "\\u") {
            size_t save = pos_;
            pos_ += 2;
            uint32_t low = 0;
            if (auto s = ParseHex4(&low); !s.ok()) return s;
            if (low >= 0xDC00 && low <= 0xDFFF) {
              cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
            } else {
              pos_ = save;  // lone high surrogate; keep as is
            }
          }
          AppendUtf8(cp, out);
          break;
        }
        default: return Error("bad escape");
      }
    }
  }

  absl::Status ParseArray(Json* out, int depth) {
    ++pos_;
    *out = Json::MakeArray();
    SkipSpace();
    if (pos_ < text_.size() && text_[pos_] == ']') {
      ++pos_;
      return absl::OkStatus();
    }
    while (true) {
      Json item;
      if (auto s = ParseValue(&item, depth + 1); !s.ok()) return s;
      out->array_.push_back(std::move(item));
      SkipSpace();
      if (pos_ >= text_.size()) return Error("unterminated array");
      char c = text_[pos_++];
      if (c == ']') return absl::OkStatus();
      if (c != ',') return Error("expected ',' or ']'");
    }
  }

  absl::Status ParseObject(Json* out, int depth) {
    ++pos_;
    *out = Json::MakeObject();
    SkipSpace();
    if (pos_ < text_.size() && text_[pos_] == '}') {
      ++pos_;
      return absl::OkStatus();
    }
    while (true) {
      SkipSpace();
      if (pos_ >= text_.size() || text_[pos_] != '"') return Error("expected a string key");
      std::string key;
      if (auto s = ParseString(&key); !s.ok()) return s;
      SkipSpace();
      if (pos_ >= text_.size() || text_[pos_] != ':') return Error("expected ':'");
      ++pos_;
      Json value;
      if (auto s = ParseValue(&value, depth + 1); !s.ok()) return s;
      out->Set(key, std::move(value));
      SkipSpace();
      if (pos_ >= text_.size()) return Error("unterminated object");
      char c = text_[pos_++];
      if (c == '}') return absl::OkStatus();
      if (c != ',') return Error("expected ',' or '}'");
    }
  }

  absl::string_view text_;
  size_t pos_ = 0;
};

absl::StatusOr<Json> Json::Parse(absl::string_view text) { return JsonParser(text).ParseDocument(); }

absl::StatusOr<int64_t> Json::AsInt() const {
  if (type_ != Type::kNumber) return absl::InvalidArgumentError("expected an integer, got a non-number");
  if (std::floor(number_) != number_ || std::fabs(number_) > 9007199254740992.0) {
    return absl::InvalidArgumentError(absl::StrCat("expected an integer, got ", number_));
  }
  return static_cast<int64_t>(number_);
}

const Json* Json::Find(absl::string_view key) const {
  if (type_ != Type::kObject) return nullptr;
  auto it = index_.find(key);
  return it == index_.end() ? nullptr : &object_[it->second].second;
}

void Json::Set(const std::string& key, Json value) {
  type_ = Type::kObject;
  auto it = index_.find(key);
  if (it != index_.end()) {
    object_[it->second].second = std::move(value);
    return;
  }
  index_.emplace(key, object_.size());
  object_.emplace_back(key, std::move(value));
}

static void DumpString(const std::string& s, std::string* out) {
  out->push_back('"');
  for (unsigned char c : s) {
    switch (c) {
      case '"': *out += "\\\""; break;
      case '\\': *out += "\\\\"; break;
      case '\n': *out += "\\n"; break;
      case '\r': *out += "\\r"; break;
      case '\t': *out += "\\t"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          *out += buf;
        } else {
          out->push_back(static_cast<char>(c));
        }
    }
  }
  out->push_back('"');
}

void Json::DumpTo(std::string* out) const {
  switch (type_) {
    case Type::kNull: *out += "null"; break;
    case Type::kBool: *out += bool_ ? "true" : "false"; break;
    case Type::kNumber: {
      if (!std::isfinite(number_)) {
        *out += std::isnan(number_) ? "NaN" : (number_ > 0 ? "Infinity" : "-Infinity");
      } else if (std::floor(number_) == number_ && std::fabs(number_) < 1e15) {
        *out += std::to_string(static_cast<int64_t>(number_));
      } else {
        char buf[32];
        std::snprintf(buf, sizeof(buf), "%.9g", number_);
        *out += buf;
      }
      break;
    }
    case Type::kString: DumpString(string_, out); break;
    case Type::kArray:
      out->push_back('[');
      for (size_t i = 0; i < array_.size(); ++i) {
        if (i) out->push_back(',');
        array_[i].DumpTo(out);
      }
      out->push_back(']');
      break;
    case Type::kObject:
      out->push_back('{');
      for (size_t i = 0; i < object_.size(); ++i) {
        if (i) out->push_back(',');
        DumpString(object_[i].first, out);
        out->push_back(':');
        object_[i].second.DumpTo(out);
      }
      out->push_back('}');
      break;
  }
}

std::string Json::Dump() const {
  std::string out;
  DumpTo(&out);
  return out;
}

absl::Status WriteJsonFile(const std::string& path, const Json& json) {
  std::ofstream out(path);
  if (!out) return absl::PermissionDeniedError(absl::StrCat("cannot write ", path));
  out << json.Dump() << "\n";
  if (!out) return absl::DataLossError(absl::StrCat("failed writing ", path));
  return absl::OkStatus();
}

absl::StatusOr<Json> ReadJsonFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::stringstream buffer;
  buffer << in.rdbuf();
  auto parsed = Json::Parse(buffer.str());
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", parsed.status().message()));
  }
  return parsed;
}

absl::StatusOr<int64_t> GetInt(const Json& obj, absl::string_view key) {
  const Json* v = obj.Find(key);
  if (v == nullptr) return absl::InvalidArgumentError(absl::StrCat("missing key \"", key, "\""));
  auto i = v->AsInt();
  if (!i.ok()) return absl::InvalidArgumentError(absl::StrCat("key \"", key, "\": ", i.status().message()));
  return i;
}

absl::StatusOr<double> GetDouble(const Json& obj, absl::string_view key) {
  const Json* v = obj.Find(key);
  if (v == nullptr) return absl::InvalidArgumentError(absl::StrCat("missing key \"", key, "\""));
  if (!v->is_number()) return absl::InvalidArgumentError(absl::StrCat("key \"", key, "\" is not a number"));
  return v->as_double();
}

absl::StatusOr<std::string> GetString(const Json& obj, absl::string_view key) {
  const Json* v = obj.Find(key);
  if (v == nullptr) return absl::InvalidArgumentError(absl::StrCat("missing key \"", key, "\""));
  if (!v->is_string()) return absl::InvalidArgumentError(absl::StrCat("key \"", key, "\" is not a string"));
  return v->as_string();
}

int64_t GetIntOr(const Json& obj, absl::string_view key, int64_t fallback) {
  const Json* v = obj.Find(key);
  if (v == nullptr || !v->is_number()) return fallback;
  return static_cast<int64_t>(v->as_double());
}

double GetDoubleOr(const Json& obj, absl::string_view key, double fallback) {
  const Json* v = obj.Find(key);
  return (v == nullptr || !v->is_number()) ? fallback : v->as_double();
}

bool GetBoolOr(const Json& obj, absl::string_view key, bool fallback) {
  const Json* v = obj.Find(key);
  return (v == nullptr || !v->is_bool()) ? fallback : v->as_bool();
}

std::string GetStringOr(const Json& obj, absl::string_view key, const std::string& fallback) {
  const Json* v = obj.Find(key);
  return (v == nullptr || !v->is_string()) ? fallback : v->as_string();
}

}  // namespace chai
