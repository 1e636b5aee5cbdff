// Multiple choice: task-file errors name the line; the lm-evaluation-harness pair split; on
// opt-tiny-docs the summed log-likelihoods of tests/fixtures/perplexity/mc_task.jsonl equal
// transformers (dense) and chai_reference.py (CHAI) within 1e-3 relative.
#include <filesystem>
#include <fstream>

#include "gtest/gtest.h"
#include "runtime/eval/choice_task.h"
#include "runtime/eval/multiple_choice.h"
#include "runtime/eval/text_data.h"
#include "runtime/json.h"
#include "tests/support/chai_helpers.h"
#include "tests/support/engine_helpers.h"
#include "tests/support/test_paths.h"

namespace chai::testing {
namespace {

namespace fs = std::filesystem;

std::string WriteTemp(const std::string& name, const std::string& text) {
  const std::string path = fs::temp_directory_path() / ("chai_eval_mc_" + name);
  std::ofstream(path) << text;
  return path;
}

void ExpectTaskError(const std::string& text, const std::string& needle) {
  const std::string path = WriteTemp("bad.jsonl", text);
  auto items = LoadChoiceTask(path);
  ASSERT_FALSE(items.ok()) << text;
  const std::string message(items.status().message());
  EXPECT_NE(message.find(needle), std::string::npos) << message;
  EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  fs::remove(path);
}

TEST(ChoiceTask, ParsesItemsAndSkipsBlankLines) {
  const std::string path = WriteTemp("ok.jsonl",
                                     "{\"context\": \"a\", \"choices\": [\" b\", \" c\"], \"label\": 1}\n\n"
                                     "{\"context\": \"\", \"choices\": [\"x\", \"y\", \"z\"], \"label\": 0}\n");
  auto items = LoadChoiceTask(path);
  ASSERT_TRUE(items.ok()) << items.status();
  ASSERT_EQ(items->size(), 2u);
  EXPECT_EQ((*items)[0].label, 1);
  EXPECT_EQ((*items)[1].line, 3);
  EXPECT_EQ((*items)[1].choices.size(), 3u);
  fs::remove(path);
}

TEST(ChoiceTask, ErrorsNameTheLine) {
  const std::string good = "{\"context\": \"a\", \"choices\": [\"b\", \"c\"], \"label\": 0}\n";
  ExpectTaskError(good + "{not json\n", ":2: not valid JSON");
  ExpectTaskError("[1, 2]\n", ":1: expected a JSON object");
  ExpectTaskError("{\"choices\": [\"b\", \"c\"], \"label\": 0}\n", "\"context\" must be a string");
  ExpectTaskError("{\"context\": \"a\", \"choices\": [\"b\"], \"label\": 0}\n", "at least 2 choices");
  ExpectTaskError("{\"context\": \"a\", \"choices\": [\"b\", \"\"], \"label\": 0}\n", "a choice is empty");
  ExpectTaskError("{\"context\": \"a\", \"choices\": [\"b\", 3], \"label\": 0}\n", "list of strings");
  ExpectTaskError("{\"context\": \"a\", \"choices\": [\"b\", \"c\"], \"label\": 2}\n", "out of range");
  ExpectTaskError("{\"context\": \"a\", \"choices\": [\"b\", \"c\"], \"label\": 0.5}\n", "must be an integer");
  ExpectTaskError("{\"context\": \"a\", \"choices\": [\"b\", \"c\"]}\n", "\"label\" is missing");
  ExpectTaskError("\n  \n", "is empty");
}

TEST(ChoiceTask, MissingFile) {
  auto items = LoadChoiceTask("/nonexistent/task.jsonl");
  ASSERT_FALSE(items.ok());
  EXPECT_NE(items.status().message().find("no such file"), absl::string_view::npos);
}

TEST(ChoiceTask, CodePointsCountCharactersNotBytes) {
  EXPECT_EQ(CodePoints("abc"), 3);
  EXPECT_EQ(CodePoints("na\xc3\xafve"), 5);  // naïve
  EXPECT_EQ(CodePoints("\xe2\x80\x9c"
                       "a"),
            2);  // “a
}

class OptTinyDocsChoice : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!SharedAvailable()) GTEST_SKIP() << "../shared is absent: skipping opt-tiny-docs multiple choice";
    const std::string dir = SharedDir() + "/models/opt-tiny-docs";
    auto tokenizer = LoadModelTokenizer(dir);
    ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
    tokenizer_ = std::move(*tokenizer);
    auto model = LoadTestModel(dir);
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = std::move(*model);
    auto golden = ReadJsonFile(FixtureDir("perplexity/golden.json"));
    ASSERT_TRUE(golden.ok()) << golden.status();
    golden_ = std::move(*golden);
    const std::string task = FixtureDir("perplexity/mc_task.jsonl");
    auto items = LoadChoiceTask(task);
    ASSERT_TRUE(items.ok()) << items.status();
    items_ = std::move(*items);
    auto requests = EncodeChoiceTask(*tokenizer_, items_, task);
    ASSERT_TRUE(requests.ok()) << requests.status();
    requests_ = std::move(*requests);
  }

  void Compare(const MultipleChoiceResult& r, const Json& golden) {
    const auto& ll = golden.Find("loglik")->as_array();
    ASSERT_EQ(static_cast<size_t>(r.items()), ll.size());
    for (int i = 0; i < r.items(); ++i) {
      for (size_t c = 0; c < r.loglik[i].size(); ++c) {
        const double g = ll[i].as_array()[c].as_double();
        EXPECT_NEAR(r.loglik[i][c], g, 1e-3 * std::abs(g)) << "item " << i << " choice " << c;
      }
    }
    EXPECT_DOUBLE_EQ(r.acc(), golden.Find("acc")->as_double());
    EXPECT_DOUBLE_EQ(r.acc_norm(), golden.Find("acc_norm")->as_double());
  }

  std::unique_ptr<Tokenizer> tokenizer_;
  TestModel model_;
  Json golden_;
  std::vector<ChoiceItem> items_;
  std::vector<std::vector<ChoiceRequest>> requests_;
};

TEST_F(OptTinyDocsChoice, TrailingContextSpaceMovesToTheContinuation) {
  const ChoiceRequest a = EncodeChoice(*tokenizer_, "The list is sorted in ascending ", "order.");
  const ChoiceRequest b = EncodeChoice(*tokenizer_, "The list is sorted in ascending", " order.");
  EXPECT_EQ(a.context, b.context);
  EXPECT_EQ(a.continuation, b.continuation);
  EXPECT_EQ(a.context.front(), tokenizer_->Encode("", true).front());  // BOS starts the context
}

TEST_F(OptTinyDocsChoice, DenseMatchesTransformers) {
  auto r = EvaluateMultipleChoice(*model_.engine, items_, requests_, {});
  ASSERT_TRUE(r.ok()) << r.status();
  Compare(*r, *golden_.Find("multiple_choice")->Find("dense"));
}

TEST_F(OptTinyDocsChoice, ChaiMatchesReference) {
  const Json& golden = golden_.Find("multiple_choice")->Find("chai")->as_array()[0];
  std::vector<int> schedule;
  for (const Json& k : golden.Find("schedule")->as_array()) schedule.push_back(static_cast<int>(*k.AsInt()));
  auto chai = AttachChai(model_, schedule);
  MultipleChoiceOptions options;
  options.chai = chai.get();
  auto r = EvaluateMultipleChoice(*model_.engine, items_, requests_, options);
  ASSERT_TRUE(r.ok()) << r.status();
  Compare(*r, golden);
  model_.engine->set_attention_policy(nullptr);
}

}  // namespace
}  // namespace chai::testing
