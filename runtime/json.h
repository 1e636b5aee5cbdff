// A small JSON value with a strict parser and a writer.
//
// Why our own: config.json, safetensors headers, tokenizer.json, golden files and
// placement files are all JSON, and the GPU machines have no JSON library we may
// rely on. Objects keep insertion order (writers produce stable files) and look
// keys up through an index built at parse time.
#ifndef CHAI_RUNTIME_JSON_H_
#define CHAI_RUNTIME_JSON_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace chai {

class Json {
 public:
  enum class Type { kNull, kBool, kNumber, kString, kArray, kObject };
  using Array = std::vector<Json>;
  using Object = std::vector<std::pair<std::string, Json>>;

  Json() = default;  // null
  Json(std::nullptr_t) {}
  Json(bool b) : type_(Type::kBool), bool_(b) {}
  Json(int v) : type_(Type::kNumber), number_(v) {}
  Json(int64_t v) : type_(Type::kNumber), number_(static_cast<double>(v)) {}
  Json(double v) : type_(Type::kNumber), number_(v) {}
  Json(const char* s) : type_(Type::kString), string_(s) {}
  Json(std::string s) : type_(Type::kString), string_(std::move(s)) {}
  Json(Array a) : type_(Type::kArray), array_(std::move(a)) {}
  static Json MakeObject() {
    Json j;
    j.type_ = Type::kObject;
    return j;
  }
  static Json MakeArray() { return Json(Array{}); }

  // Parses a complete JSON document; trailing non-space text is an error.
  static absl::StatusOr<Json> Parse(absl::string_view text);

  Type type() const { return type_; }
  bool is_null() const { return type_ == Type::kNull; }
  bool is_bool() const { return type_ == Type::kBool; }
  bool is_number() const { return type_ == Type::kNumber; }
  bool is_string() const { return type_ == Type::kString; }
  bool is_array() const { return type_ == Type::kArray; }
  bool is_object() const { return type_ == Type::kObject; }

  bool as_bool() const { return bool_; }
  double as_double() const { return number_; }
  const std::string& as_string() const { return string_; }
  const Array& as_array() const { return array_; }
  Array& as_array() { return array_; }
  const Object& as_object() const { return object_; }

  // Integer value; an error when the number is not an integer or is not a number.
  absl::StatusOr<int64_t> AsInt() const;

  // Object member lookup; nullptr when absent or when this is not an object.
  const Json* Find(absl::string_view key) const;
  // Adds or replaces a member (this must be an object).
  void Set(const std::string& key, Json value);
  void Push(Json value) { array_.push_back(std::move(value)); }

  // Compact JSON text. Numbers print with round-trip precision.
  std::string Dump() const;
  void DumpTo(std::string* out) const;

 private:
  friend class JsonParser;
  Type type_ = Type::kNull;
  bool bool_ = false;
  double number_ = 0;
  std::string string_;
  Array array_;
  Object object_;
  std::map<std::string, size_t, std::less<>> index_;  // key -> position in object_
};

// Writes json.Dump() and a newline to `path`; errors name the path.
absl::Status WriteJsonFile(const std::string& path, const Json& json);

// Reads and parses a JSON file; errors name the path.
absl::StatusOr<Json> ReadJsonFile(const std::string& path);

// Typed member getters for config-like objects: errors name the key.
absl::StatusOr<int64_t> GetInt(const Json& obj, absl::string_view key);
absl::StatusOr<double> GetDouble(const Json& obj, absl::string_view key);
absl::StatusOr<std::string> GetString(const Json& obj, absl::string_view key);
int64_t GetIntOr(const Json& obj, absl::string_view key, int64_t fallback);
double GetDoubleOr(const Json& obj, absl::string_view key, double fallback);
bool GetBoolOr(const Json& obj, absl::string_view key, bool fallback);
std::string GetStringOr(const Json& obj, absl::string_view key, const std::string& fallback);

// A JSON array of numbers, or of arrays (of arrays ...) of numbers, from nested vectors: the
// writers' ids, schedules, log-likelihoods, affinity matrices and placements.
template <typename T>
Json JsonArray(const std::vector<T>& values) {
  Json a = Json::MakeArray();
  for (const T& v : values) {
    if constexpr (std::is_integral_v<T>) {
      a.Push(Json(static_cast<int64_t>(v)));
    } else if constexpr (std::is_floating_point_v<T>) {
      a.Push(Json(static_cast<double>(v)));
    } else {
      a.Push(JsonArray(v));
    }
  }
  return a;
}

}  // namespace chai

#endif  // CHAI_RUNTIME_JSON_H_
