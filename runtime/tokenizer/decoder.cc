#include "runtime/tokenizer/decoder.h"

#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "runtime/tokenizer/byte_level.h"
#include "runtime/tokenizer/normalizer.h"
#include "runtime/tokenizer/unicode.h"

namespace chai {
namespace {

// Joins the bytes the tokens stand for; a token with a character outside the byte alphabet (an
// added token such as "<tok x>") contributes its own text.
class ByteLevelDecoder : public Decoder {
 public:
  void DecodeChain(std::vector<std::string>* tokens) const override {
    std::string bytes;
    for (const std::string& t : *tokens) {
      std::optional<std::string> b = VocabTextToBytes(t);
      bytes += b ? *b : t;
    }
    tokens->assign(1, Utf8Lossy(bytes));
  }
};

// "▁" becomes " "; in the first token it is dropped instead (it was the prepended prefix), unless
// the prepend scheme is "never".
class MetaspaceDecoder : public Decoder {
 public:
  MetaspaceDecoder(std::string replacement, bool strip_first)
      : replacement_(std::move(replacement)), strip_first_(strip_first) {}
  void DecodeChain(std::vector<std::string>* tokens) const override {
    for (size_t i = 0; i < tokens->size(); ++i) {
      ReplaceAll(&(*tokens)[i], replacement_, (i == 0 && strip_first_) ? "" : " ");
    }
  }

 private:
  std::string replacement_;
  bool strip_first_;
};

class ReplaceDecoder : public Decoder {
 public:
  ReplaceDecoder(std::string from, std::string to) : from_(std::move(from)), to_(std::move(to)) {}
  void DecodeChain(std::vector<std::string>* tokens) const override {
    for (std::string& t : *tokens) ReplaceAll(&t, from_, to_);
  }

 private:
  std::string from_, to_;
};

// Runs of <0xXX> tokens become the text their bytes spell; when the bytes are not valid UTF-8,
// each byte becomes U+FFFD.
class ByteFallbackDecoder : public Decoder {
 public:
  void DecodeChain(std::vector<std::string>* tokens) const override {
    std::vector<std::string> out;
    std::string pending;
    size_t pending_count = 0;
    auto flush = [&] {
      if (pending_count == 0) return;
      if (IsValidUtf8(pending)) {
        out.push_back(pending);
      } else {
        for (size_t i = 0; i < pending_count; ++i) out.push_back("\xEF\xBF\xBD");
      }
      pending.clear();
      pending_count = 0;
    };
    for (std::string& t : *tokens) {
      int byte = ParseByteToken(t);
      if (byte >= 0) {
        pending.push_back(static_cast<char>(byte));
        ++pending_count;
      } else {
        flush();
        out.push_back(std::move(t));
      }
    }
    flush();
    tokens->swap(out);
  }

 private:
  // <0xXX> -> XX, else -1.
  static int ParseByteToken(const std::string& t) {
    if (t.size() != 6 || t.compare(0, 3, "<0x") != 0 || t[5] != '>') return -1;
    auto hex = [](char c) {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'A' && c <= 'F') return c - 'A' + 10;
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      return -1;
    };
    const int hi = hex(t[3]), lo = hex(t[4]);
    return (hi < 0 || lo < 0) ? -1 : hi * 16 + lo;
  }
};

class FuseDecoder : public Decoder {
 public:
  void DecodeChain(std::vector<std::string>* tokens) const override {
    std::string all;
    for (const std::string& t : *tokens) all += t;
    tokens->assign(1, std::move(all));
  }
};

// Removes up to `start` leading and `stop` trailing copies of one character from every token.
class StripDecoder : public Decoder {
 public:
  StripDecoder(std::string content, int start, int stop) : content_(std::move(content)), start_(start), stop_(stop) {}
  void DecodeChain(std::vector<std::string>* tokens) const override {
    for (std::string& t : *tokens) {
      size_t begin = 0, end = t.size();
      for (int i = 0; i < start_ && t.compare(begin, content_.size(), content_) == 0 && begin < end; ++i) {
        begin += content_.size();
      }
      for (int i = 0; i < stop_ && end >= begin + content_.size() &&
                      t.compare(end - content_.size(), content_.size(), content_) == 0;
           ++i) {
        end -= content_.size();
      }
      t = t.substr(begin, end - begin);
    }
  }

 private:
  std::string content_;
  int start_, stop_;
};

class SequenceDecoder : public Decoder {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<Decoder>> steps) : steps_(std::move(steps)) {}
  void DecodeChain(std::vector<std::string>* tokens) const override {
    for (const auto& s : steps_) s->DecodeChain(tokens);
  }

 private:
  std::vector<std::unique_ptr<Decoder>> steps_;
};

absl::StatusOr<std::unique_ptr<Decoder>> ParseMetaspaceDecoder(const Json& json) {
  auto replacement = GetString(json, "replacement");
  if (!replacement.ok() || replacement->empty()) {
    return absl::InvalidArgumentError("Metaspace decoder needs a \"replacement\" string");
  }
  bool strip_first = GetBoolOr(json, "add_prefix_space", true);
  if (const Json* s = json.Find("prepend_scheme"); s != nullptr && s->is_string()) {
    strip_first = s->as_string() != "never";
  }
  return std::unique_ptr<Decoder>(new MetaspaceDecoder(*replacement, strip_first));
}

}  // namespace

std::unique_ptr<Decoder> MakeByteLevelDecoder() { return std::make_unique<ByteLevelDecoder>(); }

absl::StatusOr<std::unique_ptr<Decoder>> ParseDecoder(const Json& json) {
  if (json.is_null()) return std::unique_ptr<Decoder>();
  if (!json.is_object()) return absl::InvalidArgumentError("decoder is not an object");
  const std::string type = GetStringOr(json, "type", "");
  if (type == "ByteLevel") return MakeByteLevelDecoder();
  if (type == "Metaspace") return ParseMetaspaceDecoder(json);
  if (type == "ByteFallback") return std::unique_ptr<Decoder>(new ByteFallbackDecoder());
  if (type == "Fuse") return std::unique_ptr<Decoder>(new FuseDecoder());
  if (type == "Replace") {
    const Json* pattern = json.Find("pattern");
    const Json* from = pattern ? pattern->Find("String") : nullptr;
    auto to = GetString(json, "content");
    if (from == nullptr || !from->is_string() || from->as_string().empty() || !to.ok()) {
      return absl::InvalidArgumentError("Replace decoder needs pattern.String (not empty) and content");
    }
    return std::unique_ptr<Decoder>(new ReplaceDecoder(from->as_string(), *to));
  }
  if (type == "Strip") {
    auto content = GetString(json, "content");
    auto start = GetInt(json, "start");
    auto stop = GetInt(json, "stop");
    if (!content.ok() || content->empty() || !start.ok() || !stop.ok() || *start < 0 || *stop < 0) {
      return absl::InvalidArgumentError("Strip decoder needs content, start and stop");
    }
    return std::unique_ptr<Decoder>(new StripDecoder(*content, static_cast<int>(*start), static_cast<int>(*stop)));
  }
  if (type == "Sequence") {
    const Json* list = json.Find("decoders");
    if (list == nullptr || !list->is_array()) return absl::InvalidArgumentError("Sequence decoder needs a \"decoders\" array");
    std::vector<std::unique_ptr<Decoder>> steps;
    for (const Json& item : list->as_array()) {
      auto step = ParseDecoder(item);
      if (!step.ok()) return step.status();
      if (*step) steps.push_back(std::move(*step));
    }
    return std::unique_ptr<Decoder>(new SequenceDecoder(std::move(steps)));
  }
  if (type.empty()) return absl::InvalidArgumentError("decoder has no \"type\"");
  return absl::UnimplementedError(absl::StrCat("decoder type \"", type, "\" is not supported"));
}

}  // namespace chai
