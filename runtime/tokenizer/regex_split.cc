#include "runtime/tokenizer/regex_split.h"

#include <cstdint>

#include "runtime/tokenizer/unicode.h"

namespace chai {
namespace {

constexpr char kGpt2Regex[] =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr char kLlama3Regex[] =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr char kQwen2Regex[] =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

enum class Cls : uint8_t { kLetter, kNumber, kSpace, kOther };

// Character classes of ASCII, looked up without decoding.
struct AsciiClasses {
  Cls cls[128];
  AsciiClasses() {
    for (int c = 0; c < 128; ++c) {
      cls[c] = IsLetter(c) ? Cls::kLetter : IsNumber(c) ? Cls::kNumber : IsWhiteSpace(c) ? Cls::kSpace : Cls::kOther;
    }
  }
};
const AsciiClasses kAscii;

// A cursor that decodes one character at a time.
class Text {
 public:
  explicit Text(absl::string_view s) : s_(s) {}
  size_t size() const { return s_.size(); }
  // Class and byte length of the character at pos (pos < size()).
  Cls ClassAt(size_t pos, size_t* len) const {
    const unsigned char c = static_cast<unsigned char>(s_[pos]);
    if (c < 0x80) {
      *len = 1;
      return kAscii.cls[c];
    }
    const uint32_t cp = DecodeUtf8(s_, pos, len);
    if (cp == kInvalidCodePoint) return Cls::kOther;
    if (IsLetter(cp)) return Cls::kLetter;
    if (IsNumber(cp)) return Cls::kNumber;
    if (IsWhiteSpace(cp)) return Cls::kSpace;
    return Cls::kOther;
  }
  char At(size_t pos) const { return s_[pos]; }
  // End of the run of characters of class c starting at pos, at most max_chars of them.
  size_t RunEnd(size_t pos, Cls c, size_t max_chars = SIZE_MAX) const {
    size_t len, n = 0;
    while (pos < s_.size() && n < max_chars && ClassAt(pos, &len) == c) {
      pos += len;
      ++n;
    }
    return pos;
  }

 private:
  absl::string_view s_;
};

char Lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }

// 's 't 're 've 'm 'll 'd at pos (text[pos] == '\''); returns the match end or 0.
size_t MatchContraction(const Text& t, size_t pos, bool ignore_case) {
  auto ch = [&](size_t i) -> char {
    if (pos + i >= t.size()) return 0;
    return ignore_case ? Lower(t.At(pos + i)) : t.At(pos + i);
  };
  const char a = ch(1);
  // Under (?i), U+017F LATIN SMALL LETTER LONG S case-folds to 's' (Oniguruma matches it).
  if (ignore_case && a == '\xC5' && ch(2) == '\xBF') return pos + 3;
  if (a == 's' || a == 't' || a == 'm' || a == 'd') return pos + 2;
  const char b = ch(2);
  if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return pos + 3;
  return 0;
}

// \s+(?!\S)|\s+ at pos (a white-space character): the run, less its last character when a
// non-space follows and the run has more than one character.
size_t MatchSpaceRun(const Text& t, size_t pos) {
  size_t len, end = pos, last = pos;
  while (end < t.size() && t.ClassAt(end, &len) == Cls::kSpace) {
    last = end;
    end += len;
  }
  if (end == t.size() || last == pos) return end;
  return last;
}

size_t MatchGpt2(const Text& t, size_t pos) {
  size_t len;
  const Cls c = t.ClassAt(pos, &len);
  if (t.At(pos) == '\'') {
    if (size_t e = MatchContraction(t, pos, /*ignore_case=*/false)) return e;
  }
  // ` ?X+` for X in letters, numbers, others.
  size_t start = pos;
  Cls x = c;
  if (t.At(pos) == ' ' && pos + 1 < t.size()) {
    size_t next_len;
    x = t.ClassAt(pos + 1, &next_len);
    start = pos + 1;
  }
  if (x != Cls::kSpace) return t.RunEnd(start, x);
  return MatchSpaceRun(t, pos);
}

size_t MatchLlama3(const Text& t, size_t pos, size_t max_digits) {
  size_t len;
  const Cls c = t.ClassAt(pos, &len);
  const char ch = t.At(pos);
  if (ch == '\'') {
    if (size_t e = MatchContraction(t, pos, /*ignore_case=*/true)) return e;
  }
  // [^\r\n\p{L}\p{N}]?\p{L}+
  if (c == Cls::kLetter) return t.RunEnd(pos, Cls::kLetter);
  if (c != Cls::kNumber && ch != '\r' && ch != '\n' && pos + len < t.size()) {
    size_t next_len;
    if (t.ClassAt(pos + len, &next_len) == Cls::kLetter) return t.RunEnd(pos + len, Cls::kLetter);
  }
  // \p{N}{1,max}
  if (c == Cls::kNumber) return t.RunEnd(pos, Cls::kNumber, max_digits);
  // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
  size_t start = pos;
  Cls x = c;
  if (ch == ' ' && pos + 1 < t.size()) {
    size_t next_len;
    x = t.ClassAt(pos + 1, &next_len);
    start = pos + 1;
  }
  if (x == Cls::kOther) {
    size_t end = t.RunEnd(start, Cls::kOther);
    while (end < t.size() && (t.At(end) == '\r' || t.At(end) == '\n')) ++end;
    return end;
  }
  // \s*[\r\n]+ : through the last line break of the white-space run.
  size_t end = pos, after_break = 0;
  while (end < t.size() && t.ClassAt(end, &len) == Cls::kSpace) {
    if (t.At(end) == '\r' || t.At(end) == '\n') after_break = end + 1;
    end += len;
  }
  if (after_break != 0) return after_break;
  return MatchSpaceRun(t, pos);
}

}  // namespace

std::optional<SplitPattern> RecognizeSplitPattern(absl::string_view regex) {
  if (regex == kGpt2Regex) return SplitPattern::kGpt2;
  if (regex == kLlama3Regex) return SplitPattern::kLlama3;
  if (regex == kQwen2Regex) return SplitPattern::kQwen2;
  return std::nullopt;
}

void SplitByPattern(SplitPattern pattern, absl::string_view text, std::vector<absl::string_view>* out) {
  const Text t(text);
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.size();
    switch (pattern) {
      case SplitPattern::kGpt2: end = MatchGpt2(t, pos); break;
      case SplitPattern::kLlama3: end = MatchLlama3(t, pos, 3); break;
      case SplitPattern::kQwen2: end = MatchLlama3(t, pos, 1); break;
    }
    out->push_back(text.substr(pos, end - pos));
    pos = end;
  }
}

}  // namespace chai
