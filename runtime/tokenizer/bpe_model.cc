#include "runtime/tokenizer/bpe_model.h"

#include <algorithm>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "runtime/tokenizer/byte_level.h"
#include "runtime/tokenizer/unicode.h"

namespace chai {
namespace {

constexpr absl::string_view kMetaspace = "\xE2\x96\x81";  // U+2581 "▁"

// Whether the "▁" at byte hit (> 0) of text comes right after a character other than "▁".
bool AfterOtherChar(absl::string_view text, size_t hit) {
  return hit < kMetaspace.size() || text.compare(hit - kMetaspace.size(), kMetaspace.size(), kMetaspace) != 0;
}

}  // namespace

absl::StatusOr<std::unique_ptr<BpeModel>> BpeModel::Create(
    const std::vector<std::pair<std::string, int32_t>>& vocab,
    const std::vector<std::pair<std::string, std::string>>& merges, const BpeConfig& config) {
  auto model = std::unique_ptr<BpeModel>(new BpeModel());
  model->config_ = config;
  model->byte_ids_.fill(-1);

  // Token text -> id, to resolve merges (they are written in vocabulary text).
  absl::flat_hash_map<std::string, int32_t> text_to_id;
  text_to_id.reserve(vocab.size());
  int32_t max_id = -1;
  for (const auto& [text, id] : vocab) {
    if (id < 0) return absl::InvalidArgumentError(absl::StrCat("vocab entry \"", text, "\" has negative id ", id));
    text_to_id[text] = id;
    max_id = std::max(max_id, id);
  }
  model->id_to_token_.resize(static_cast<size_t>(max_id) + 1);
  model->encode_vocab_.reserve(vocab.size());
  for (const auto& [text, id] : vocab) {
    model->id_to_token_[id] = text;
    if (!config.byte_level) {
      model->encode_vocab_[text] = id;
      continue;
    }
    std::optional<std::string> bytes = VocabTextToBytes(text);
    if (bytes) {
      model->encode_vocab_[*bytes] = id;
      if (bytes->size() == 1) model->byte_ids_[static_cast<unsigned char>((*bytes)[0])] = id;
    } else {
      model->other_tokens_[text] = id;
    }
  }
  if (config.byte_fallback && !config.byte_level) {
    for (int b = 0; b < 256; ++b) {
      auto it = text_to_id.find(absl::StrFormat("<0x%02X>", b));
      if (it != text_to_id.end()) model->byte_ids_[b] = it->second;
    }
  }
  if (!config.unk_token.empty()) {
    auto it = text_to_id.find(config.unk_token);
    if (it == text_to_id.end()) {
      return absl::InvalidArgumentError(absl::StrCat("unk_token \"", config.unk_token, "\" is not in the vocab"));
    }
    model->unk_id_ = it->second;
  }

  if (!config.byte_level && text_to_id.contains(kMetaspace)) {
    model->split_at_metaspace_ = true;
    for (const auto& entry : vocab) {
      const absl::string_view text = entry.first;
      for (size_t hit = text.find(kMetaspace, 1); hit != absl::string_view::npos; hit = text.find(kMetaspace, hit + 1)) {
        if (AfterOtherChar(text, hit)) model->split_at_metaspace_ = false;
      }
    }
  }

  model->merges_.reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [left, right] = merges[rank];
    auto a = text_to_id.find(left);
    auto b = text_to_id.find(right);
    auto merged = text_to_id.find(absl::StrCat(left, right));
    if (a == text_to_id.end() || b == text_to_id.end() || merged == text_to_id.end()) {
      const std::string missing = a == text_to_id.end()   ? left
                                  : b == text_to_id.end() ? right
                                                          : absl::StrCat(left, right);
      return absl::InvalidArgumentError(
          absl::StrCat("merge ", rank, " (\"", left, "\" \"", right, "\"): token \"", missing, "\" is not in the vocab"));
    }
    // The first occurrence of a pair wins, as in Hugging Face.
    model->merges_.try_emplace(PairKey(a->second, b->second),
                               MergeRule{static_cast<int32_t>(rank), merged->second});
  }
  return model;
}

const std::string& BpeModel::IdToToken(int32_t id) const {
  static const std::string* empty = new std::string();
  if (id < 0 || id >= size()) return *empty;
  return id_to_token_[id];
}

int32_t BpeModel::TokenToId(absl::string_view token) const {
  if (config_.byte_level) {
    if (auto it = other_tokens_.find(token); it != other_tokens_.end()) return it->second;
    std::optional<std::string> bytes = VocabTextToBytes(token);
    if (!bytes) return -1;
    auto it = encode_vocab_.find(*bytes);
    return it == encode_vocab_.end() ? -1 : it->second;
  }
  auto it = encode_vocab_.find(token);
  return it == encode_vocab_.end() ? -1 : it->second;
}

void BpeModel::InitialSymbols(absl::string_view word, std::vector<int32_t>* symbols) const {
  symbols->clear();
  // A pending run of unknown characters: emitted as one token when fuse_unk is set.
  bool pending_unk = false;
  auto flush_unk = [&] {
    if (pending_unk) symbols->push_back(unk_id_);
    pending_unk = false;
  };
  auto unknown = [&] {
    if (unk_id_ < 0) return;  // no unknown token: the character is dropped
    if (pending_unk && !config_.fuse_unk) symbols->push_back(unk_id_);
    pending_unk = true;
  };
  if (config_.byte_level) {
    for (unsigned char b : word) {
      const int32_t id = byte_ids_[b];
      if (id >= 0) {
        flush_unk();
        symbols->push_back(id);
      } else {
        unknown();
      }
    }
    flush_unk();
    return;
  }
  size_t pos = 0;
  while (pos < word.size()) {
    const size_t len = Utf8CharLen(word, pos);
    const absl::string_view ch = word.substr(pos, len);
    pos += len;
    if (auto it = encode_vocab_.find(ch); it != encode_vocab_.end()) {
      flush_unk();
      symbols->push_back(it->second);
      continue;
    }
    if (config_.byte_fallback &&
        std::all_of(ch.begin(), ch.end(), [&](char c) { return byte_ids_[static_cast<unsigned char>(c)] >= 0; })) {
      // Hugging Face adds the byte tokens without emitting a pending unknown first; keep its order.
      for (unsigned char c : ch) symbols->push_back(byte_ids_[c]);
      continue;
    }
    unknown();
  }
  flush_unk();
}

void BpeModel::Merge(std::vector<int32_t>* symbols) const {
  const int n = static_cast<int>(symbols->size());
  if (n < 2) return;
  struct Sym {
    int32_t id, prev, next;
  };
  struct Candidate {
    int32_t rank, pos, new_id;
    // Orders the heap so that the lowest rank, then the lowest position, is on top.
    bool operator<(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  thread_local std::vector<Sym> syms;
  thread_local std::vector<Candidate> heap;
  syms.resize(n);
  heap.clear();
  for (int i = 0; i < n; ++i) syms[i] = {(*symbols)[i], i - 1, i + 1 < n ? i + 1 : -1};
  auto consider = [&](int32_t pos) {
    const int32_t next = syms[pos].next;
    if (next < 0) return;
    auto it = merges_.find(PairKey(syms[pos].id, syms[next].id));
    if (it == merges_.end()) return;
    heap.push_back({it->second.rank, pos, it->second.new_id});
    std::push_heap(heap.begin(), heap.end());
  };
  for (int i = 0; i + 1 < n; ++i) consider(i);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end());
    const Candidate top = heap.back();
    heap.pop_back();
    Sym& left = syms[top.pos];
    if (left.id < 0 || left.next < 0) continue;
    // Skip stale candidates: one of the two symbols changed since the pair was queued.
    auto it = merges_.find(PairKey(left.id, syms[left.next].id));
    if (it == merges_.end() || it->second.new_id != top.new_id || it->second.rank != top.rank) continue;
    Sym& right = syms[left.next];
    left.id = top.new_id;
    right.id = -1;
    left.next = right.next;
    if (left.next >= 0) syms[left.next].prev = top.pos;
    if (left.prev >= 0) consider(left.prev);
    consider(top.pos);
  }
  symbols->clear();
  for (int i = 0; i >= 0; i = syms[i].next) symbols->push_back(syms[i].id);
}

void BpeModel::EncodeWord(absl::string_view word, std::vector<int32_t>* ids) const {
  if (!split_at_metaspace_) {
    EncodePiece(word, ids);
    return;
  }
  size_t begin = 0;
  while (begin < word.size()) {
    // Cut before the next "▁" that follows a character other than "▁".
    size_t cut = word.find(kMetaspace, begin + 1);
    while (cut != absl::string_view::npos && !AfterOtherChar(word, cut)) {
      cut = word.find(kMetaspace, cut + 1);
    }
    if (cut == absl::string_view::npos) cut = word.size();
    EncodePiece(word.substr(begin, cut - begin), ids);
    begin = cut;
  }
}

void BpeModel::EncodePiece(absl::string_view word, std::vector<int32_t>* ids) const {
  if (word.empty()) return;
  if (config_.ignore_merges || word.size() == 1) {
    auto it = encode_vocab_.find(word);
    if (it != encode_vocab_.end()) {
      ids->push_back(it->second);
      return;
    }
  }
  const bool cacheable = word.size() <= kMaxCachedWordBytes;
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mu_);
    auto it = cache_.find(word);
    if (it != cache_.end()) {
      ids->insert(ids->end(), it->second.begin(), it->second.end());
      return;
    }
  }
  thread_local std::vector<int32_t> symbols;
  InitialSymbols(word, &symbols);
  Merge(&symbols);
  ids->insert(ids->end(), symbols.begin(), symbols.end());
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mu_);
    if (cache_.size() >= kMaxCacheEntries) cache_.clear();
    cache_.emplace(word, symbols);
  }
}

}  // namespace chai
