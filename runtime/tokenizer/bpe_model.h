// The BPE model: turns one pre-tokenized word into ids by applying merges in rank order.
//
// Two input alphabets: byte-level (GPT-2, OPT, LLaMA-3), where the word is raw bytes and every byte
// is a starting symbol, and character-level (SentencePiece-style LLaMA-1/2), where every UTF-8
// character is a starting symbol and characters missing from the vocabulary fall back to <0xXX>
// byte tokens or to the unknown token.
//
// Merging follows Hugging Face: repeatedly merge the adjacent pair with the lowest merge rank
// (leftmost on ties), found through a priority queue over candidate pairs. Results for short
// words are cached (the cache is guarded by a mutex, so Encode stays thread-safe).
#ifndef CHAI_RUNTIME_TOKENIZER_BPE_MODEL_H_
#define CHAI_RUNTIME_TOKENIZER_BPE_MODEL_H_

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace chai {

struct BpeConfig {
  bool byte_level = false;     // vocabulary written in the byte_level.h alphabet; words are raw bytes
  bool byte_fallback = false;  // unknown characters become <0xXX> tokens
  bool fuse_unk = false;       // consecutive unknown characters become one unknown token
  bool ignore_merges = false;  // a word that is itself in the vocabulary is emitted whole
  std::string unk_token;       // empty: unknown characters are dropped
};

class BpeModel {
 public:
  // vocab: (token text, id) pairs; merges: pairs of token texts, in rank order.
  // Errors describe the bad entry (the caller adds the file name).
  static absl::StatusOr<std::unique_ptr<BpeModel>> Create(
      const std::vector<std::pair<std::string, int32_t>>& vocab,
      const std::vector<std::pair<std::string, std::string>>& merges, const BpeConfig& config);

  // Appends the ids of word (not empty).
  void EncodeWord(absl::string_view word, std::vector<int32_t>* ids) const;

  int32_t size() const { return static_cast<int32_t>(id_to_token_.size()); }
  // The vocabulary text of id; empty when id has no token.
  const std::string& IdToToken(int32_t id) const;
  // The id of a vocabulary text, or -1.
  int32_t TokenToId(absl::string_view token) const;

 private:
  struct MergeRule {
    int32_t rank;
    int32_t new_id;
  };
  static uint64_t PairKey(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }

  // The starting symbols of word (before merges).
  void InitialSymbols(absl::string_view word, std::vector<int32_t>* symbols) const;
  // Applies merges to symbols in place.
  void Merge(std::vector<int32_t>* symbols) const;
  // EncodeWord without the word-boundary split.
  void EncodePiece(absl::string_view word, std::vector<int32_t>* ids) const;

  BpeConfig config_;
  // Encoding lookups: keyed by raw bytes in byte-level mode, by token text otherwise.
  absl::flat_hash_map<std::string, int32_t> encode_vocab_;
  // Byte-level vocabulary entries whose text is not in the byte alphabet (reachable only by TokenToId).
  absl::flat_hash_map<std::string, int32_t> other_tokens_;
  std::vector<std::string> id_to_token_;
  absl::flat_hash_map<uint64_t, MergeRule> merges_;
  // Byte-level: the id of each single byte. Byte fallback: the id of <0xXX>. -1 when absent.
  std::array<int32_t, 256> byte_ids_;
  int32_t unk_id_ = -1;
  // SentencePiece-style vocabularies: when "▁" is a token and no token has "▁" right after another
  // character, no merge can join symbols across a "▁" that follows a non-"▁" character. Words are
  // then cut there and encoded piece by piece (same result, and the pieces are cacheable). LLaMA-2
  // files have no pre-tokenizer, so without this the whole input would be a single word.
  bool split_at_metaspace_ = false;

  static constexpr size_t kMaxCachedWordBytes = 64;
  static constexpr size_t kMaxCacheEntries = 1 << 16;
  mutable std::mutex cache_mu_;
  mutable absl::flat_hash_map<std::string, std::vector<int32_t>> cache_;
};

}  // namespace chai

#endif  // CHAI_RUNTIME_TOKENIZER_BPE_MODEL_H_
