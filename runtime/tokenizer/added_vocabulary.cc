#include "runtime/tokenizer/added_vocabulary.h"

#include <algorithm>
#include <utility>

#include "runtime/tokenizer/unicode.h"

namespace chai {
namespace {

bool IsWordChar(uint32_t cp) { return cp == '_' || IsLetter(cp) || IsNumber(cp); }

// Start of the character that ends at byte `end` of text (end > 0).
size_t PrevCharStart(absl::string_view text, size_t end) {
  size_t start = end - 1;
  while (start > 0 && end - start < 4 && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
  size_t len;
  DecodeUtf8(text, start, &len);
  return start + len == end ? start : end - 1;
}

uint32_t CharBefore(absl::string_view text, size_t end) {
  size_t len;
  return DecodeUtf8(text, PrevCharStart(text, end), &len);
}

}  // namespace

void TokenMatcher::Build(std::vector<std::string> patterns, std::vector<AddedToken> tokens) {
  patterns_ = std::move(patterns);
  tokens_ = std::move(tokens);
  for (auto& list : by_first_byte_) list.clear();
  for (size_t i = 0; i < patterns_.size(); ++i) {
    if (patterns_[i].empty()) continue;
    by_first_byte_[static_cast<unsigned char>(patterns_[i][0])].push_back(static_cast<int>(i));
  }
  for (auto& list : by_first_byte_) {
    // Longest first; among equal patterns the first listed wins.
    std::stable_sort(list.begin(), list.end(),
                     [&](int a, int b) { return patterns_[a].size() > patterns_[b].size(); });
  }
}

int TokenMatcher::LongestAt(absl::string_view text, size_t pos) const {
  for (int i : by_first_byte_[static_cast<unsigned char>(text[pos])]) {
    const std::string& p = patterns_[i];
    if (p.size() <= text.size() - pos && text.compare(pos, p.size(), p) == 0) return i;
  }
  return -1;
}

void TokenMatcher::Split(absl::string_view text, std::vector<Segment>* out) const {
  auto push_text = [&](size_t begin, size_t end) {
    if (end > begin) out->push_back({-1, text.substr(begin, end - begin), begin});
  };
  if (patterns_.empty()) {
    push_text(0, text.size());
    return;
  }
  size_t start_offset = 0;  // end of the last accepted token
  size_t pos = 0;           // where the search for the next match starts
  while (pos < text.size()) {
    const int i = by_first_byte_[static_cast<unsigned char>(text[pos])].empty() ? -1 : LongestAt(text, pos);
    if (i < 0) {
      ++pos;
      continue;
    }
    const AddedToken& token = tokens_[i];
    size_t start = pos, stop = pos + patterns_[i].size();
    pos = stop;
    if (token.single_word) {
      size_t len;
      const bool space_before = start == 0 || !IsWordChar(CharBefore(text, start));
      const bool space_after = stop == text.size() || !IsWordChar(DecodeUtf8(text, stop, &len));
      if (!space_before || !space_after) continue;
    }
    if (token.lstrip) {
      size_t s = start;
      while (s > 0) {
        const size_t prev = PrevCharStart(text, s);
        size_t len;
        if (!IsWhiteSpace(DecodeUtf8(text, prev, &len))) break;
        s = prev;
      }
      start = std::max(s, start_offset);
    }
    if (token.rstrip) {
      size_t len;
      while (stop < text.size() && IsWhiteSpace(DecodeUtf8(text, stop, &len))) stop += len;
    }
    push_text(start_offset, start);
    out->push_back({token.id, text.substr(start, stop - start), start});
    start_offset = stop;
  }
  push_text(start_offset, text.size());
}

const AddedToken* AddedVocabulary::Find(int32_t id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &tokens_[it->second];
}

int32_t AddedVocabulary::IdOf(absl::string_view content) const {
  auto it = by_content_.find(content);
  return it == by_content_.end() ? -1 : it->second;
}

}  // namespace chai
