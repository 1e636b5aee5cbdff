#include "runtime/tokenizer/pre_tokenizer.h"

#include <optional>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "runtime/tokenizer/normalizer.h"
#include "runtime/tokenizer/regex_split.h"

namespace chai {
namespace {

// Runs split_one on every piece and collects the non-empty results.
template <typename F>
void SplitEach(std::vector<Piece>* pieces, F split_one) {
  std::vector<Piece> out;
  out.reserve(pieces->size() * 2);
  for (const Piece& p : *pieces) split_one(p, &out);
  pieces->swap(out);
}

void PushSubPieces(const Piece& parent, const std::vector<absl::string_view>& parts, std::vector<Piece>* out) {
  for (absl::string_view s : parts) {
    if (!s.empty()) out->push_back({s, parent.at_start && s.data() == parent.text.data()});
  }
}

class ByteLevelPreTokenizer : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, bool use_regex)
      : add_prefix_space_(add_prefix_space), use_regex_(use_regex) {}
  void Split(std::vector<Piece>* pieces, PieceArena* arena) const override {
    std::vector<absl::string_view> parts;
    SplitEach(pieces, [&](const Piece& p, std::vector<Piece>* out) {
      Piece piece = p;
      if (add_prefix_space_ && !absl::StartsWith(piece.text, " ")) {
        piece.text = arena->Own(absl::StrCat(" ", piece.text));
      }
      if (!use_regex_) {
        if (!piece.text.empty()) out->push_back(piece);
        return;
      }
      parts.clear();
      SplitByPattern(SplitPattern::kGpt2, piece.text, &parts);
      PushSubPieces(piece, parts, out);
    });
  }

 private:
  bool add_prefix_space_, use_regex_;
};

enum class PrependScheme { kAlways, kFirst, kNever };

class MetaspacePreTokenizer : public PreTokenizer {
 public:
  MetaspacePreTokenizer(std::string replacement, PrependScheme scheme, bool split)
      : replacement_(std::move(replacement)), scheme_(scheme), split_(split) {}
  void Split(std::vector<Piece>* pieces, PieceArena* arena) const override {
    SplitEach(pieces, [&](const Piece& p, std::vector<Piece>* out) {
      std::string s(p.text);
      ReplaceAll(&s, " ", replacement_);
      const bool prepend = scheme_ == PrependScheme::kAlways || (scheme_ == PrependScheme::kFirst && p.at_start);
      if (prepend && !absl::StartsWith(s, replacement_)) s.insert(0, replacement_);
      absl::string_view text = arena->Own(std::move(s));
      if (!split_) {
        if (!text.empty()) out->push_back({text, p.at_start});
        return;
      }
      // Each replacement character starts a new piece (SplitDelimiterBehavior::MergedWithNext).
      size_t begin = 0;
      while (begin < text.size()) {
        size_t next = text.find(replacement_, begin + 1);
        if (next == absl::string_view::npos) next = text.size();
        out->push_back({text.substr(begin, next - begin), p.at_start && begin == 0});
        begin = next;
      }
    });
  }

 private:
  std::string replacement_;
  PrependScheme scheme_;
  bool split_;
};

enum class Behavior { kIsolated, kRemoved, kMergedWithPrevious, kMergedWithNext, kContiguous };

// Split with a literal string pattern.
class StringSplitPreTokenizer : public PreTokenizer {
 public:
  StringSplitPreTokenizer(std::string pattern, Behavior behavior)
      : pattern_(std::move(pattern)), behavior_(behavior) {}
  void Split(std::vector<Piece>* pieces, PieceArena* arena) const override {
    std::vector<absl::string_view> parts;
    SplitEach(pieces, [&](const Piece& p, std::vector<Piece>* out) {
      parts.clear();
      const absl::string_view t = p.text;
      size_t pos = 0, piece_begin = 0;
      bool last_was_match = false;
      while (true) {
        const size_t hit = t.find(pattern_, pos);
        if (hit == absl::string_view::npos) break;
        const size_t end = hit + pattern_.size();
        switch (behavior_) {
          case Behavior::kIsolated:
            parts.push_back(t.substr(piece_begin, hit - piece_begin));
            parts.push_back(t.substr(hit, pattern_.size()));
            piece_begin = end;
            break;
          case Behavior::kRemoved:
            parts.push_back(t.substr(piece_begin, hit - piece_begin));
            piece_begin = end;
            break;
          case Behavior::kMergedWithPrevious:
            parts.push_back(t.substr(piece_begin, end - piece_begin));
            piece_begin = end;
            break;
          case Behavior::kMergedWithNext:
            parts.push_back(t.substr(piece_begin, hit - piece_begin));
            piece_begin = hit;
            break;
          case Behavior::kContiguous:
            if (last_was_match && hit == piece_begin) {  // extends the previous match
              const size_t start = parts.back().data() - t.data();
              parts.back() = t.substr(start, end - start);
            } else {
              parts.push_back(t.substr(piece_begin, hit - piece_begin));
              parts.push_back(t.substr(hit, pattern_.size()));
            }
            piece_begin = end;
            break;
        }
        last_was_match = true;
        pos = end;
      }
      parts.push_back(t.substr(piece_begin));
      PushSubPieces(p, parts, out);
    });
  }

 private:
  std::string pattern_;
  Behavior behavior_;
};

class RegexSplitPreTokenizer : public PreTokenizer {
 public:
  explicit RegexSplitPreTokenizer(SplitPattern pattern) : pattern_(pattern) {}
  void Split(std::vector<Piece>* pieces, PieceArena* arena) const override {
    std::vector<absl::string_view> parts;
    SplitEach(pieces, [&](const Piece& p, std::vector<Piece>* out) {
      parts.clear();
      SplitByPattern(pattern_, p.text, &parts);
      PushSubPieces(p, parts, out);
    });
  }

 private:
  SplitPattern pattern_;
};

class SequencePreTokenizer : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> steps) : steps_(std::move(steps)) {}
  void Split(std::vector<Piece>* pieces, PieceArena* arena) const override {
    for (const auto& step : steps_) step->Split(pieces, arena);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> steps_;
};

absl::StatusOr<std::unique_ptr<PreTokenizer>> ParseSplit(const Json& json) {
  const Json* pattern = json.Find("pattern");
  const std::string behavior_name = GetStringOr(json, "behavior", "");
  if (GetBoolOr(json, "invert", false)) return absl::UnimplementedError("Split pre-tokenizer with invert is not supported");
  if (pattern == nullptr || !pattern->is_object()) return absl::InvalidArgumentError("Split pre-tokenizer has no pattern");
  if (const Json* regex = pattern->Find("Regex")) {
    if (!regex->is_string()) return absl::InvalidArgumentError("Split pre-tokenizer: pattern.Regex is not a string");
    std::optional<SplitPattern> known = RecognizeSplitPattern(regex->as_string());
    if (!known) {
      return absl::UnimplementedError(
          absl::StrCat("Split pre-tokenizer regex is not one this build knows: ", regex->as_string()));
    }
    if (behavior_name != "Isolated") {
      return absl::UnimplementedError(absl::StrCat("Split pre-tokenizer with a regex and behavior \"",
                                                   behavior_name, "\" is not supported"));
    }
    return std::unique_ptr<PreTokenizer>(new RegexSplitPreTokenizer(*known));
  }
  const Json* literal = pattern->Find("String");
  if (literal == nullptr || !literal->is_string() || literal->as_string().empty()) {
    return absl::InvalidArgumentError("Split pre-tokenizer needs pattern.String or pattern.Regex");
  }
  Behavior behavior;
  if (behavior_name == "Isolated") behavior = Behavior::kIsolated;
  else if (behavior_name == "Removed") behavior = Behavior::kRemoved;
  else if (behavior_name == "MergedWithPrevious") behavior = Behavior::kMergedWithPrevious;
  else if (behavior_name == "MergedWithNext") behavior = Behavior::kMergedWithNext;
  else if (behavior_name == "Contiguous") behavior = Behavior::kContiguous;
  else return absl::InvalidArgumentError(absl::StrCat("Split pre-tokenizer: unknown behavior \"", behavior_name, "\""));
  return std::unique_ptr<PreTokenizer>(new StringSplitPreTokenizer(literal->as_string(), behavior));
}

absl::StatusOr<std::unique_ptr<PreTokenizer>> ParseMetaspace(const Json& json) {
  auto replacement = GetString(json, "replacement");
  if (!replacement.ok() || replacement->empty()) {
    return absl::InvalidArgumentError("Metaspace pre-tokenizer needs a \"replacement\" string");
  }
  // Older files say add_prefix_space (true = "always"); newer ones say prepend_scheme.
  PrependScheme scheme = GetBoolOr(json, "add_prefix_space", true) ? PrependScheme::kAlways : PrependScheme::kNever;
  if (const Json* s = json.Find("prepend_scheme"); s != nullptr && s->is_string()) {
    if (s->as_string() == "always") scheme = PrependScheme::kAlways;
    else if (s->as_string() == "first") scheme = PrependScheme::kFirst;
    else if (s->as_string() == "never") scheme = PrependScheme::kNever;
    else return absl::InvalidArgumentError(absl::StrCat("Metaspace: unknown prepend_scheme \"", s->as_string(), "\""));
  }
  return std::unique_ptr<PreTokenizer>(
      new MetaspacePreTokenizer(*replacement, scheme, GetBoolOr(json, "split", true)));
}

// Parses one step; *byte_level is set when the step is ByteLevel.
absl::StatusOr<std::unique_ptr<PreTokenizer>> ParseStep(const Json& json, bool* byte_level) {
  if (!json.is_object()) return absl::InvalidArgumentError("pre_tokenizer is not an object");
  const std::string type = GetStringOr(json, "type", "");
  *byte_level = false;
  if (type == "ByteLevel") {
    *byte_level = true;
    return std::unique_ptr<PreTokenizer>(new ByteLevelPreTokenizer(GetBoolOr(json, "add_prefix_space", false),
                                                                   GetBoolOr(json, "use_regex", true)));
  }
  if (type == "Metaspace") return ParseMetaspace(json);
  if (type == "Split") return ParseSplit(json);
  if (type == "Sequence") {
    const Json* list = json.Find("pretokenizers");
    if (list == nullptr || !list->is_array()) {
      return absl::InvalidArgumentError("Sequence pre-tokenizer needs a \"pretokenizers\" array");
    }
    std::vector<std::unique_ptr<PreTokenizer>> steps;
    const auto& items = list->as_array();
    for (size_t i = 0; i < items.size(); ++i) {
      bool step_byte_level;
      auto step = ParseStep(items[i], &step_byte_level);
      if (!step.ok()) return step.status();
      if (step_byte_level && i + 1 != items.size()) {
        return absl::UnimplementedError("a ByteLevel pre-tokenizer that is not last in its Sequence is not supported");
      }
      *byte_level = step_byte_level;
      steps.push_back(std::move(*step));
    }
    return std::unique_ptr<PreTokenizer>(new SequencePreTokenizer(std::move(steps)));
  }
  if (type.empty()) return absl::InvalidArgumentError("pre_tokenizer has no \"type\"");
  return absl::UnimplementedError(absl::StrCat("pre_tokenizer type \"", type, "\" is not supported"));
}

}  // namespace

absl::StatusOr<ParsedPreTokenizer> ParsePreTokenizer(const Json& json) {
  ParsedPreTokenizer parsed;
  if (json.is_null()) return parsed;
  auto step = ParseStep(json, &parsed.byte_level);
  if (!step.ok()) return step.status();
  parsed.pre_tokenizer = std::move(*step);
  return parsed;
}

}  // namespace chai
