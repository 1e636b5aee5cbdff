// Encodes and decodes the golden corpus of tests/fixtures/tokenizers (made by
// make_tokenizer_goldens.py with Hugging Face tokenizers / transformers / sentencepiece) and
// expects the reference library's exact ids and text.
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "runtime/json.h"
#include "runtime/tokenizer/tokenizer.h"

namespace chai {
namespace {

const std::string kFixtures = CHAI_SOURCE_DIR "/tests/fixtures/tokenizers/";
const std::string kOptTiny = CHAI_SOURCE_DIR "/../shared/models/opt-tiny-docs";

struct Fixture {
  const char* name;      // goldens file stem
  std::string location;  // tokenizer.json file or directory
};

void PrintTo(const Fixture& f, std::ostream* os) { *os << f.name; }

std::vector<Fixture> Fixtures() {
  return {
      {"gpt2_bytelevel", kFixtures + "gpt2_bytelevel/tokenizer.json"},
      {"gpt2_prefix_space", kFixtures + "gpt2_prefix_space/tokenizer.json"},
      {"gpt2_files", kFixtures + "gpt2_files"},
      {"llama3_style", kFixtures + "llama3_style/tokenizer.json"},
      {"llama2_legacy", kFixtures + "llama2_legacy/tokenizer.json"},
      {"llama_metaspace", kFixtures + "llama_metaspace/tokenizer.json"},
      {"llama_metaspace_split", kFixtures + "llama_metaspace_split/tokenizer.json"},
      {"sp_llama", kFixtures + "sp_llama"},
      {"opt_tiny_docs", kOptTiny + "/tokenizer.json"},
  };
}

std::vector<int32_t> Ids(const Json& array) {
  std::vector<int32_t> out;
  for (const Json& v : array.as_array()) out.push_back(static_cast<int32_t>(v.as_double()));
  return out;
}

std::string Show(const std::vector<int32_t>& ids) {
  std::string s;
  for (int32_t id : ids) absl::StrAppend(&s, s.empty() ? "" : ",", id);
  return "[" + s + "]";
}

class GoldenTest : public ::testing::TestWithParam<Fixture> {
 protected:
  void SetUp() override {
    const Fixture& f = GetParam();
    if (std::string(f.name) == "opt_tiny_docs" && !std::ifstream(f.location).good()) {
      GTEST_SKIP() << "../shared/models/opt-tiny-docs is absent (" << f.location << ")";
    }
    if (std::string(f.name) == "sp_llama" && !Tokenizer::SentencePieceAvailable()) {
      GTEST_SKIP() << "this build has no sentencepiece (tokenizer_errors_test checks the message)";
    }
    auto goldens = ReadJsonFile(kFixtures + f.name + ".goldens.json");
    ASSERT_TRUE(goldens.ok()) << goldens.status();
    goldens_ = *goldens;
    const bool is_dir = f.location.find("tokenizer.json") == std::string::npos;
    auto tok = is_dir ? Tokenizer::FromDirectory(f.location) : Tokenizer::FromTokenizerJson(f.location);
    ASSERT_TRUE(tok.ok()) << tok.status();
    tokenizer_ = std::move(*tok);
  }

  const Json::Array& Cases() const { return goldens_.Find("cases")->as_array(); }

  Json goldens_;
  std::unique_ptr<Tokenizer> tokenizer_;
};

TEST_P(GoldenTest, EncodeMatchesReference) {
  ASSERT_GE(Cases().size(), 100u);
  for (const Json& c : Cases()) {
    const std::string& text = c.Find("text")->as_string();
    EXPECT_EQ(Show(tokenizer_->Encode(text, true)), Show(Ids(*c.Find("ids")))) << "text: \"" << text << "\"";
    EXPECT_EQ(Show(tokenizer_->Encode(text, false)), Show(Ids(*c.Find("ids_no_special"))))
        << "text: \"" << text << "\"";
  }
}

TEST_P(GoldenTest, DecodeMatchesReference) {
  for (const Json& c : Cases()) {
    const std::vector<int32_t> ids = Ids(*c.Find("ids"));
    EXPECT_EQ(tokenizer_->Decode(ids, true), c.Find("decoded")->as_string()) << "ids: " << Show(ids);
    EXPECT_EQ(tokenizer_->Decode(ids, false), c.Find("decoded_keep_special")->as_string()) << "ids: " << Show(ids);
  }
}

// decode(encode(x)) == x wherever the reference round-trips, and for most of the corpus.
TEST_P(GoldenTest, RoundTripsWhereReferenceDoes) {
  int reference_round_trips = 0;
  for (const Json& c : Cases()) {
    const std::string& text = c.Find("text")->as_string();
    if (c.Find("decoded")->as_string() != text) continue;
    ++reference_round_trips;
    EXPECT_EQ(tokenizer_->Decode(tokenizer_->Encode(text, true), true), text);
  }
  EXPECT_GE(reference_round_trips, 10);
}

// Streaming the ids one at a time yields the same text as decoding them at once.
TEST_P(GoldenTest, StreamDecoderMatchesDecode) {
  for (bool skip : {true, false}) {
    for (const Json& c : Cases()) {
      const std::vector<int32_t> ids = Ids(*c.Find("ids"));
      StreamDecoder stream(*tokenizer_, skip);
      std::string text;
      for (int32_t id : ids) text += stream.Push(id);
      text += stream.Flush();
      EXPECT_EQ(text, tokenizer_->Decode(ids, skip)) << "ids: " << Show(ids) << " skip=" << skip;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Tokenizers, GoldenTest, ::testing::ValuesIn(Fixtures()),
                         [](const ::testing::TestParamInfo<Fixture>& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace chai
