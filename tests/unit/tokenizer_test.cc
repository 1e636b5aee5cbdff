// Unit tests of the tokenizer pieces: Unicode classes, the byte alphabet, the hand-written regex
// splitters, the loaders' format choice and the public API beyond encode/decode.
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/json.h"
#include "runtime/tokenizer/byte_level.h"
#include "runtime/tokenizer/regex_split.h"
#include "runtime/tokenizer/tokenizer.h"
#include "runtime/tokenizer/unicode.h"

namespace chai {
namespace {

const std::string kFixtures = CHAI_SOURCE_DIR "/tests/fixtures/tokenizers/";

std::vector<std::string> Split(SplitPattern p, absl::string_view text) {
  std::vector<absl::string_view> parts;
  SplitByPattern(p, text, &parts);
  return std::vector<std::string>(parts.begin(), parts.end());
}

using Strings = std::vector<std::string>;

TEST(UnicodeTest, Classes) {
  EXPECT_TRUE(IsLetter('a'));
  EXPECT_TRUE(IsLetter(0x00E9));   // é
  EXPECT_TRUE(IsLetter(0x4E2D));   // 中
  EXPECT_TRUE(IsLetter(0x05D0));   // א
  EXPECT_FALSE(IsLetter(0x0301));  // combining acute (Mn)
  EXPECT_FALSE(IsLetter('1'));
  EXPECT_TRUE(IsNumber('7'));
  EXPECT_TRUE(IsNumber(0x00BD));   // ½ (No)
  EXPECT_TRUE(IsNumber(0x0663));   // Arabic-Indic three (Nd)
  EXPECT_TRUE(IsNumber(0x2167));   // Roman numeral eight (Nl)
  EXPECT_FALSE(IsNumber('x'));
  EXPECT_TRUE(IsWhiteSpace(' '));
  EXPECT_TRUE(IsWhiteSpace(0x00A0));
  EXPECT_TRUE(IsWhiteSpace(0x3000));
  EXPECT_FALSE(IsWhiteSpace(0x200B));  // zero width space is not White_Space
  EXPECT_FALSE(IsWhiteSpace(0x1C));
  EXPECT_FALSE(IsLetter(0x1F600));     // emoji
}

TEST(UnicodeTest, Utf8LossyMatchesRust) {
  EXPECT_EQ(Utf8Lossy("ok"), "ok");
  EXPECT_EQ(Utf8Lossy("a\xE2\x82"), "a\xEF\xBF\xBD");          // one U+FFFD for a cut sequence
  EXPECT_EQ(Utf8Lossy("\xFF\xFE"), "\xEF\xBF\xBD\xEF\xBF\xBD");  // one per invalid byte
  EXPECT_EQ(Utf8Lossy("\xE2\x82\xAC"), "\xE2\x82\xAC");
  EXPECT_TRUE(IsValidUtf8("\xF0\x9F\x98\x80"));
  EXPECT_FALSE(IsValidUtf8("\xED\xA0\x80"));  // surrogate
}

TEST(ByteLevelTest, AlphabetRoundTrips) {
  EXPECT_EQ(BytesToVocabText(" "), "\xC4\xA0");   // Ġ
  EXPECT_EQ(BytesToVocabText("\n"), "\xC4\x8A");  // Ċ
  EXPECT_EQ(BytesToVocabText("a"), "a");
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  auto back = VocabTextToBytes(BytesToVocabText(all));
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(*back, all);
  EXPECT_FALSE(VocabTextToBytes("a b").has_value());  // a real space is not in the alphabet
}

TEST(RegexSplitTest, Gpt2) {
  EXPECT_EQ(Split(SplitPattern::kGpt2, "Hello world"), (Strings{"Hello", " world"}));
  EXPECT_EQ(Split(SplitPattern::kGpt2, "I'm they're"), (Strings{"I", "'m", " they", "'re"}));
  EXPECT_EQ(Split(SplitPattern::kGpt2, "a   b"), (Strings{"a", "  ", " b"}));
  EXPECT_EQ(Split(SplitPattern::kGpt2, "x \n\n y  "), (Strings{"x", " \n\n", " y", "  "}));
  EXPECT_EQ(Split(SplitPattern::kGpt2, "abc123 456!?"), (Strings{"abc", "123", " 456", "!?"}));
  EXPECT_EQ(Split(SplitPattern::kGpt2, "\t\tx"), (Strings{"\t", "\t", "x"}));
  EXPECT_EQ(Split(SplitPattern::kGpt2, "!!'s"), (Strings{"!!'", "s"}));
  EXPECT_EQ(Split(SplitPattern::kGpt2, "caf\xC3\xA9 \xE4\xB8\xAD"), (Strings{"caf\xC3\xA9", " \xE4\xB8\xAD"}));
  EXPECT_EQ(Split(SplitPattern::kGpt2, ""), Strings{});
}

TEST(RegexSplitTest, Llama3) {
  EXPECT_EQ(Split(SplitPattern::kLlama3, "Hello world"), (Strings{"Hello", " world"}));
  EXPECT_EQ(Split(SplitPattern::kLlama3, "I'M 12345"), (Strings{"I", "'M", " ", "123", "45"}));
  EXPECT_EQ(Split(SplitPattern::kLlama3, "\"quoted\" x"), (Strings{"\"quoted", "\"", " x"}));
  EXPECT_EQ(Split(SplitPattern::kLlama3, "a;\n\nb"), (Strings{"a", ";\n\n", "b"}));
  EXPECT_EQ(Split(SplitPattern::kLlama3, "x  \n  y"), (Strings{"x", "  \n", " ", " y"}));
  EXPECT_EQ(Split(SplitPattern::kLlama3, "\tfoo"), (Strings{"\tfoo"}));
  EXPECT_EQ(Split(SplitPattern::kLlama3, "'\xC5\xBFx"), (Strings{"'\xC5\xBF", "x"}));  // 'ſ folds to 's
  EXPECT_EQ(Split(SplitPattern::kGpt2, "'\xC5\xBFx"), (Strings{"'", "\xC5\xBFx"}));
  EXPECT_EQ(Split(SplitPattern::kLlama3, "x\xCC\x81y a\xC2\xB2" "b"),  // combining mark, superscript two
            (Strings{"x", "\xCC\x81y", " a", "\xC2\xB2", "b"}));
  EXPECT_EQ(Split(SplitPattern::kQwen2, "12345"), (Strings{"1", "2", "3", "4", "5"}));
}

TEST(RegexSplitTest, RecognizesPatterns) {
  EXPECT_EQ(RecognizeSplitPattern(R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)"),
            SplitPattern::kGpt2);
  EXPECT_FALSE(RecognizeSplitPattern(R"(\w+|[^\w\s]+)").has_value());
}

TEST(TokenizerTest, FromDirectoryPicksFormat) {
  auto json = Tokenizer::FromDirectory(kFixtures + "gpt2_bytelevel");
  ASSERT_TRUE(json.ok()) << json.status();
  auto files = Tokenizer::FromDirectory(kFixtures + "gpt2_files");
  ASSERT_TRUE(files.ok()) << files.status();
  // Same model: same ids for ordinary text (gpt2_files also adds its bos token).
  std::vector<int32_t> a = (*json)->Encode("Hello there, world!", false);
  EXPECT_EQ(a, (*files)->Encode("Hello there, world!", false));
  std::vector<int32_t> with_bos = (*files)->Encode("Hello there, world!", true);
  ASSERT_EQ(with_bos.size(), a.size() + 1);
  EXPECT_EQ(with_bos[0], (*files)->TokenToId("<|endoftext|>"));
}

TEST(TokenizerTest, VocabularyQueries) {
  auto tok = Tokenizer::FromTokenizerJson(kFixtures + "llama2_legacy/tokenizer.json");
  ASSERT_TRUE(tok.ok()) << tok.status();
  const Tokenizer& t = **tok;
  EXPECT_EQ(t.TokenToId("<s>"), 1);
  EXPECT_EQ(t.TokenToId("</s>"), 2);
  EXPECT_EQ(t.TokenToId("<0x41>"), 3 + 0x41);
  EXPECT_EQ(t.TokenToId("no such token"), -1);
  EXPECT_EQ(t.IdToToken(2), "</s>");
  EXPECT_EQ(t.IdToToken(-5), "");
  EXPECT_TRUE(t.IsSpecial(1));
  EXPECT_FALSE(t.IsSpecial(100));
  EXPECT_GT(t.vocab_size(), 1000);
  EXPECT_EQ(t.IdToToken(t.vocab_size()), "");
  // Out-of-range ids are ignored by Decode.
  EXPECT_EQ(t.Decode({t.vocab_size() + 7, -1}), "");

  auto gpt2 = Tokenizer::FromTokenizerJson(kFixtures + "gpt2_bytelevel/tokenizer.json");
  ASSERT_TRUE(gpt2.ok());
  const int32_t space_id = (*gpt2)->TokenToId("\xC4\xA0");  // "Ġ"
  EXPECT_GE(space_id, 0);
  EXPECT_EQ((*gpt2)->Decode({space_id}), " ");
  EXPECT_GE((*gpt2)->TokenToId("[NEW]"), 0);  // an added token
}

// Tokenizer.json files from tokenizers < 0.20 write merges as "a b" strings.
TEST(TokenizerTest, StringMergesEqualPairMerges) {
  auto root = ReadJsonFile(kFixtures + "gpt2_bytelevel/tokenizer.json");
  ASSERT_TRUE(root.ok());
  Json model = *root->Find("model");
  Json merges = Json::MakeArray();
  for (const Json& m : model.Find("merges")->as_array()) {
    merges.Push(Json(m.as_array()[0].as_string() + " " + m.as_array()[1].as_string()));
  }
  model.Set("merges", merges);
  Json copy = *root;
  copy.Set("model", model);
  const std::string path = testing::TempDir() + "/string_merges_tokenizer.json";
  {
    std::ofstream out(path);
    out << copy.Dump();
  }
  auto a = Tokenizer::FromTokenizerJson(kFixtures + "gpt2_bytelevel/tokenizer.json");
  auto b = Tokenizer::FromTokenizerJson(path);
  ASSERT_TRUE(a.ok() && b.ok()) << b.status();
  const std::string text = "def f(x):\n    return x ** 2  # square\n";
  EXPECT_EQ((*a)->Encode(text), (*b)->Encode(text));
}

// Input that is not valid UTF-8 still encodes; decoding shows the bad bytes as U+FFFD.
TEST(TokenizerTest, InvalidUtf8Input) {
  const std::string bad = "ok \xFF\xFE end";
  for (const char* dir : {"gpt2_bytelevel", "llama3_style", "llama2_legacy", "llama_metaspace", "sp_llama"}) {
    SCOPED_TRACE(dir);
    if (std::string(dir) == "sp_llama" && !Tokenizer::SentencePieceAvailable()) continue;
    auto tok = Tokenizer::FromDirectory(kFixtures + dir);
    ASSERT_TRUE(tok.ok()) << tok.status();
    EXPECT_EQ((*tok)->Decode((*tok)->Encode(bad)), "ok \xEF\xBF\xBD\xEF\xBF\xBD end");
  }
}

TEST(TokenizerTest, EncodeIsThreadSafe) {
  auto tok = Tokenizer::FromTokenizerJson(kFixtures + "gpt2_bytelevel/tokenizer.json");
  ASSERT_TRUE(tok.ok());
  std::string text;
  for (int i = 0; i < 200; ++i) text += "word" + std::to_string(i) + " and more words, " + std::to_string(i * 7) + "\n";
  const std::vector<int32_t> expected = (*tok)->Encode(text);
  std::vector<std::thread> threads;
  std::vector<int> ok(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      bool all = true;
      for (int i = 0; i < 20; ++i) all = all && (*tok)->Encode(text) == expected;
      ok[t] = all;
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < 4; ++t) EXPECT_TRUE(ok[t]) << "thread " << t;
}

TEST(StreamDecoderTest, HoldsBackIncompleteUtf8) {
  auto tok = Tokenizer::FromTokenizerJson(kFixtures + "llama2_legacy/tokenizer.json");
  ASSERT_TRUE(tok.ok());
  const Tokenizer& t = **tok;
  // "€" is E2 82 AC: three byte-fallback tokens; nothing prints until the last arrives.
  StreamDecoder stream(t);
  EXPECT_EQ(stream.Push(t.TokenToId("<s>")), "");
  EXPECT_EQ(stream.Push(t.TokenToId("<0xE2>")), "");
  EXPECT_EQ(stream.Push(t.TokenToId("<0x82>")), "");
  EXPECT_EQ(stream.Push(t.TokenToId("<0xAC>")), "\xE2\x82\xAC");
  EXPECT_EQ(stream.Flush(), "");
}

TEST(StreamDecoderTest, KeepsSpacesBetweenWords) {
  auto tok = Tokenizer::FromTokenizerJson(kFixtures + "llama_metaspace/tokenizer.json");
  ASSERT_TRUE(tok.ok());
  const std::string text = "The stream prints words as they arrive, with their spaces.";
  std::vector<int32_t> ids = (*tok)->Encode(text);
  StreamDecoder stream(**tok);
  std::string out;
  int pieces = 0;
  for (int32_t id : ids) {
    std::string s = stream.Push(id);
    pieces += !s.empty();
    out += s;
  }
  out += stream.Flush();
  EXPECT_EQ(out, text);
  EXPECT_GT(pieces, 5);  // text came out along the way, not only at Flush
}

}  // namespace
}  // namespace chai
