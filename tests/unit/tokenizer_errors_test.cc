// Malformed tokenizer files end in one-line errors that name the file and the problem.
#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "runtime/tokenizer/tokenizer.h"

namespace chai {
namespace {

const std::string kFixtures = CHAI_SOURCE_DIR "/tests/fixtures/tokenizers/";

std::string Write(const std::string& name, const std::string& content) {
  const std::string path = testing::TempDir() + "/" + name;
  std::ofstream out(path, std::ios::binary);
  out << content;
  return path;
}

// A minimal valid byte-level tokenizer.json with parts swappable for broken ones.
std::string TokenizerJson(const std::string& model, const std::string& extra = "") {
  return R"({"version":"1.0","added_tokens":[{"id":0,"content":"</s>","special":true}],)"
         R"("normalizer":null,"pre_tokenizer":{"type":"ByteLevel","add_prefix_space":false},)"
         R"("post_processor":null,"decoder":{"type":"ByteLevel"},)" +
         extra + R"("model":)" + model + "}";
}
const char kGoodModel[] =
    R"({"type":"BPE","vocab":{"</s>":0,"a":1,"b":2,"ab":3},"merges":[["a","b"]]})";

// Expects a failed load whose message is one line naming path and containing problem.
void ExpectError(const absl::StatusOr<std::unique_ptr<Tokenizer>>& result, const std::string& path,
                 const std::string& problem) {
  ASSERT_FALSE(result.ok()) << "loading " << path << " should fail with: " << problem;
  const std::string message(result.status().message());
  EXPECT_TRUE(absl::StartsWith(message, path + ": ")) << message;
  EXPECT_NE(message.find(problem), std::string::npos) << message;
  EXPECT_EQ(message.find('\n'), std::string::npos) << message;
}

TEST(TokenizerErrorsTest, GoodMinimalFileLoads) {
  const std::string path = Write("good.json", TokenizerJson(kGoodModel));
  auto tok = Tokenizer::FromTokenizerJson(path);
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ((*tok)->Encode("ab</s>ba"), (std::vector<int32_t>{3, 0, 2, 1}));
}

TEST(TokenizerErrorsTest, TokenizerJsonProblems) {
  struct Case {
    const char* name;
    std::string content;
    const char* problem;
  };
  const std::string bad_merges = R"({"type":"BPE","vocab":{"a":1,"b":2},"merges":[["a","b"]]})";
  const Case cases[] = {
      {"truncated.json", TokenizerJson(kGoodModel).substr(0, 80), "invalid JSON"},
      {"array.json", "[1, 2, 3]", "not a JSON object"},
      {"no_model.json", R"({"version":"1.0"})", "no \"model\""},
      {"unigram.json", TokenizerJson(R"({"type":"Unigram","vocab":[["a",0.0]]})"), "model type \"Unigram\" is not supported"},
      {"wordpiece.json", TokenizerJson(R"({"type":"WordPiece","vocab":{"a":0}})"), "\"WordPiece\" is not supported"},
      {"vocab_list.json", TokenizerJson(R"({"type":"BPE","vocab":["a"],"merges":[]})"), "model.vocab is not an object"},
      {"vocab_id.json", TokenizerJson(R"({"type":"BPE","vocab":{"a":"one"},"merges":[]})"), "model.vocab[\"a\"] is not a valid token id"},
      {"no_merges.json", TokenizerJson(R"({"type":"BPE","vocab":{"a":0}})"), "model has no \"merges\""},
      {"merge_unknown.json", TokenizerJson(bad_merges), "merge 0 (\"a\" \"b\"): token \"ab\" is not in the vocab"},
      {"merge_string.json", TokenizerJson(R"({"type":"BPE","vocab":{"a":0},"merges":["abc"]})"), "model.merges[0] \"abc\" is not two tokens"},
      {"merge_number.json", TokenizerJson(R"({"type":"BPE","vocab":{"a":0},"merges":[7]})"), "model.merges[0] is neither"},
      {"unk.json", TokenizerJson(R"({"type":"BPE","vocab":{"a":0},"merges":[],"unk_token":"<unk>"})"), "unk_token \"<unk>\" is not in the vocab"},
      {"added.json", TokenizerJson(kGoodModel, R"("added_tokens":[{"id":5}],)"), "added_tokens[0] needs an id and a non-empty content"},
      {"pre.json", TokenizerJson(kGoodModel, R"("pre_tokenizer":{"type":"Whitespace"},)"), "pre_tokenizer: pre_tokenizer type \"Whitespace\" is not supported"},
      {"regex.json", TokenizerJson(kGoodModel, R"("pre_tokenizer":{"type":"Split","pattern":{"Regex":"\\w+"},"behavior":"Isolated"},)"), "regex is not one this build knows"},
      {"normalizer.json", TokenizerJson(kGoodModel, R"("normalizer":{"type":"NFKC"},)"), "normalizer: normalizer type \"NFKC\" is not supported"},
      {"decoder.json", TokenizerJson(kGoodModel, R"("decoder":{"type":"WordPiece"},)"), "decoder: decoder type \"WordPiece\" is not supported"},
      {"template.json", TokenizerJson(kGoodModel, R"("post_processor":{"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"<s>"}},{"Sequence":{"id":"A"}}],"special_tokens":{}},)"), "special token \"<s>\" is not in special_tokens"},
      {"newline.json", TokenizerJson(R"({"type":"BPE","vocab":{"a\nb":0},"merges":[["a","\nb"]]})"), "merge 0 (\"a\" \"\\nb\"): token \"a\" is not in the vocab"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string path = Write(c.name, c.content);
    ExpectError(Tokenizer::FromTokenizerJson(path), path, c.problem);
  }
}

TEST(TokenizerErrorsTest, MissingFiles) {
  const std::string missing = testing::TempDir() + "/does_not_exist/tokenizer.json";
  ExpectError(Tokenizer::FromTokenizerJson(missing), missing, "no such file");
  const std::string not_dir = testing::TempDir() + "/no_such_dir";
  ExpectError(Tokenizer::FromDirectory(not_dir), not_dir, "not a directory");
  const std::string empty = testing::TempDir() + "/empty_checkpoint";
  std::filesystem::create_directories(empty);
  ExpectError(Tokenizer::FromDirectory(empty), empty, "no tokenizer found");
}

TEST(TokenizerErrorsTest, VocabAndMergesProblems) {
  const std::string vocab = Write("vocab.json", R"({"a":0,"b":1,"ab":2})");
  const std::string merges = Write("merges.txt", "#version: 0.2\na b\n");
  ASSERT_TRUE(Tokenizer::FromVocabAndMerges(vocab, merges).ok());

  const std::string bad_vocab = Write("bad_vocab.json", R"({"a":0,"b":)");
  ExpectError(Tokenizer::FromVocabAndMerges(bad_vocab, merges), bad_vocab, "invalid JSON");
  const std::string list_vocab = Write("list_vocab.json", R"(["a","b"])");
  ExpectError(Tokenizer::FromVocabAndMerges(list_vocab, merges), list_vocab, "not an object of token -> id");
  const std::string bad_line = Write("bad_merges.txt", "#version: 0.2\na b\na b c\n");
  ExpectError(Tokenizer::FromVocabAndMerges(vocab, bad_line), bad_line, "line 3 is not two tokens");
  const std::string unknown = Write("unknown_merges.txt", "a x\n");
  ExpectError(Tokenizer::FromVocabAndMerges(vocab, unknown), unknown, "token \"x\" is not in the vocab");
  const std::string no_merges = testing::TempDir() + "/nope_merges.txt";
  ExpectError(Tokenizer::FromVocabAndMerges(vocab, no_merges), no_merges, "no such file");

  const std::string dir = testing::TempDir() + "/bad_config";
  std::filesystem::create_directories(dir);
  Write("bad_config/vocab.json", R"({"a":0,"b":1,"ab":2})");
  Write("bad_config/merges.txt", "a b\n");
  Write("bad_config/tokenizer_config.json", R"({"add_bos_token": true, "bos_token": )");
  ExpectError(Tokenizer::FromDirectory(dir), dir + "/tokenizer_config.json", "invalid JSON");
  Write("bad_config/tokenizer_config.json", R"({"add_bos_token": true, "bos_token": "<s>"})");
  ExpectError(Tokenizer::FromDirectory(dir), dir + "/tokenizer_config.json", "bos_token \"<s>\" is not in");
}

TEST(TokenizerErrorsTest, SentencePieceModelProblems) {
  const std::string garbage = Write("garbage.model", "this is not a protobuf \x01\x02\x03");
  auto result = Tokenizer::FromSentencePieceModel(garbage);
  if (!Tokenizer::SentencePieceAvailable()) {
    ExpectError(result, garbage, "lacks sentencepiece");
    return;
  }
  ExpectError(result, garbage, "not a valid SentencePiece model");
  const std::string missing = testing::TempDir() + "/missing.model";
  ExpectError(Tokenizer::FromSentencePieceModel(missing), missing, "no such file");
}

// Without sentencepiece, a checkpoint that only has tokenizer.model says why it cannot load.
TEST(TokenizerErrorsTest, SentencePieceMissingFromBuild) {
  auto result = Tokenizer::FromDirectory(kFixtures + "sp_llama");
  if (Tokenizer::SentencePieceAvailable()) {
    EXPECT_TRUE(result.ok()) << result.status();
  } else {
    ExpectError(result, kFixtures + "sp_llama/tokenizer.model", "this build of chai lacks sentencepiece");
  }
}

}  // namespace
}  // namespace chai
