#include "runtime/tokenizer/hf_tokenizer.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_join.h"

namespace chai {

HfTokenizer::HfTokenizer(HfTokenizerParts parts) : parts_(std::move(parts)) {
  const Normalizer* normalizer = parts_.normalizer.get();
  added_.Build(parts_.added_tokens, [normalizer](const std::string& content) {
    std::string s = content;
    if (normalizer) normalizer->Normalize(&s);
    return s;
  });
}

void HfTokenizer::EncodeSegment(absl::string_view text, bool at_start, std::vector<int32_t>* ids) const {
  std::string normalized;
  if (parts_.normalizer) {
    normalized.assign(text.data(), text.size());
    parts_.normalizer->Normalize(&normalized);
    text = normalized;
  }
  std::vector<Segment> segments;
  added_.normalized_matcher().Split(text, &segments);
  PieceArena arena;
  std::vector<Piece> pieces;
  for (const Segment& seg : segments) {
    if (seg.id >= 0) {
      ids->push_back(seg.id);
      continue;
    }
    pieces.assign(1, Piece{seg.text, at_start && seg.offset == 0});
    if (parts_.pre_tokenizer) parts_.pre_tokenizer->Split(&pieces, &arena);
    for (const Piece& p : pieces) {
      if (!p.text.empty()) parts_.model->EncodeWord(p.text, ids);
    }
  }
}

std::vector<int32_t> HfTokenizer::Encode(absl::string_view text, bool add_special_tokens) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  std::vector<Segment> segments;
  added_.raw_matcher().Split(text, &segments);
  for (const Segment& seg : segments) {
    if (seg.id >= 0) {
      ids.push_back(seg.id);
    } else {
      EncodeSegment(seg.text, seg.offset == 0, &ids);
    }
  }
  if (add_special_tokens && parts_.post_processor) parts_.post_processor->Process(&ids);
  return ids;
}

std::string HfTokenizer::Decode(absl::Span<const int32_t> ids, bool skip_special_tokens) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids) {
    const AddedToken* added = added_.Find(id);
    if (added != nullptr) {
      if (!(skip_special_tokens && added->special)) tokens.push_back(added->content);
      continue;
    }
    const std::string& token = parts_.model->IdToToken(id);
    if (token.empty()) continue;  // not a token id
    if (skip_special_tokens && added_.IsSpecialContent(token)) continue;
    tokens.push_back(token);
  }
  if (!parts_.decoder) return absl::StrJoin(tokens, " ");
  parts_.decoder->DecodeChain(&tokens);
  return absl::StrJoin(tokens, "");
}

int32_t HfTokenizer::vocab_size() const { return std::max(parts_.model->size(), added_.max_id() + 1); }

int32_t HfTokenizer::TokenToId(absl::string_view token) const {
  const int32_t id = added_.IdOf(token);
  return id >= 0 ? id : parts_.model->TokenToId(token);
}

std::string HfTokenizer::IdToToken(int32_t id) const {
  const AddedToken* added = added_.Find(id);
  return added ? added->content : parts_.model->IdToToken(id);
}

bool HfTokenizer::IsSpecial(int32_t id) const {
  const AddedToken* added = added_.Find(id);
  return added ? added->special : added_.IsSpecialContent(parts_.model->IdToToken(id));
}

}  // namespace chai
