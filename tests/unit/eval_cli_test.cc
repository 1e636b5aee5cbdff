// `chai eval` through the real binary: bad input ends in one line "chai: error: ..." naming the
// problem, and a small --compare run prints both modes and writes the JSON.

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "runtime/json.h"
#include "tests/support/chai_cli.h"
#include "tests/support/test_paths.h"

namespace chai::testing {
namespace {

namespace fs = std::filesystem;

void ExpectError(const std::string& args, const std::string& needle) { ExpectChaiCliError(args, needle); }

std::string TempFile(const std::string& name, const std::string& text) {
  const std::string path = fs::temp_directory_path() / ("chai_eval_cli_" + name);
  std::ofstream(path) << text;
  return path;
}

// Needs no ../shared: the fixture model has 64 positions and no tokenizer.
const std::string kFixture = FixtureDir("opt-preln");

TEST(EvalCli, MissingDataFile) {
  ExpectError("eval --model " + kFixture + " --data /nonexistent/text.txt",
              "--data: no such file: /nonexistent/text.txt");
}

TEST(EvalCli, EmptyDataFile) {
  const std::string path = TempFile("empty.txt", " \n\n");
  ExpectError("eval --model " + kFixture + " --data " + path, "is empty");
}

TEST(EvalCli, WindowLargerThanModelPositions) {
  const std::string path = TempFile("text.txt", "some text\n");
  ExpectError("eval --model " + kFixture + " --data " + path + " --window 128",
              "--window 128 exceeds the model's maximum of 64 positions");
}

TEST(EvalCli, CompareNeedsChai) {
  const std::string path = TempFile("text.txt", "some text\n");
  ExpectError("eval --model " + kFixture + " --data " + path + " --compare", "--compare needs a CHAI schedule");
}

TEST(EvalCli, NeedsDataOrTask) { ExpectError("eval --model " + kFixture, "give --data"); }

TEST(EvalCli, BadStride) {
  const std::string path = TempFile("text.txt", "some text\n");
  ExpectError("eval --model " + kFixture + " --data " + path + " --window 32 --stride 33", "--stride must be between");
  ExpectError("eval --model " + kFixture + " --data " + path + " --window 32 --stride 0", "--stride must be between");
}

TEST(EvalCli, BadSplit) {
  const std::string path = TempFile("text.txt", "some text\n");
  ExpectError("eval --model " + kFixture + " --data " + path + " --window 32 --split test", "--split must be all");
  ExpectError("eval --model " + kFixture + " --data " + path + " --window 32 --stride 16 --split heldout",
              "drop --stride");
}

TEST(EvalCli, ModelWithoutTokenizer) {
  const std::string path = TempFile("text.txt", "some text\n");
  ExpectError("eval --model " + kFixture + " --data " + path + " --window 32", "no tokenizer");
}

TEST(EvalCli, BadTaskLine) {
  const std::string path = TempFile("task.jsonl", "{\"context\": \"a\", \"choices\": [\"b\", \"c\"], \"label\": 5}\n");
  ExpectError("eval --model " + kFixture + " --task " + path, ":1: \"label\" 5 is out of range");
}

TEST(EvalCli, CompareOnOptTinyDocs) {
  if (!SharedAvailable()) GTEST_SKIP() << "../shared is absent: skipping opt-tiny-docs";
  const std::string json = fs::temp_directory_path() / "chai_eval_cli.json";
  const std::string task = FixtureDir("perplexity/mc_task.jsonl");
  ChaiCliResult r = RunChaiCli(absl::StrCat("eval --model ", SharedDir(), "/models/opt-tiny-docs --data ", SharedDir(),
                                     "/data/dev_eval.txt --window 64 --max-windows 2 --task ", task,
                                     " --chai 12x4,4x4 --compare --json ", json));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("dense "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("chai "), std::string::npos) << r.out;
  auto out = ReadJsonFile(json);
  ASSERT_TRUE(out.ok()) << out.status();
  const Json* ppl = out->Find("perplexity");
  ASSERT_NE(ppl, nullptr);
  EXPECT_EQ(*ppl->Find("windows")->AsInt(), 2);
  EXPECT_EQ(*ppl->Find("tokens")->AsInt(), 126);
  EXPECT_GT(ppl->Find("dense")->Find("perplexity")->as_double(), 1.0);
  EXPECT_GT(ppl->Find("chai")->Find("perplexity")->as_double(), 1.0);
  const Json* mc = out->Find("multiple_choice");
  ASSERT_NE(mc, nullptr);
  EXPECT_EQ(*mc->Find("items")->AsInt(), 8);
  EXPECT_NE(mc->Find("chai")->Find("acc"), nullptr);
  EXPECT_EQ(out->Find("chai_schedule")->as_array().size(), 8u);
  fs::remove(json);
}

// A --batch larger than the windows there are sizes nothing beyond them: the same perplexity as one
// window a pass (it had sized a KV cache for the --batch: 100000 windows' worth, past the host).
TEST(EvalCli, BatchBeyondTheWindows) {
  if (!SharedAvailable()) GTEST_SKIP() << "../shared is absent: skipping opt-tiny-docs";
  const std::string args = absl::StrCat("eval --model ", SharedDir(), "/models/opt-tiny-docs --data ", SharedDir(),
                                        "/data/dev_eval.txt --window 64 --max-windows 2 --quiet --json ");
  double perplexity[2] = {0, 0};
  const int batches[2] = {1, 100000};
  for (int i = 0; i < 2; ++i) {
    const std::string json = fs::temp_directory_path() / absl::StrCat("chai_eval_cli_batch", i, ".json");
    const ChaiCliResult r = RunChaiCli(absl::StrCat(args, json, " --batch ", batches[i]));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto out = ReadJsonFile(json);
    ASSERT_TRUE(out.ok()) << out.status();
    perplexity[i] = out->Find("perplexity")->Find("dense")->Find("perplexity")->as_double();
    fs::remove(json);
  }
  EXPECT_GT(perplexity[0], 1.0);
  EXPECT_NEAR(perplexity[1], perplexity[0], 1e-9 * perplexity[0]);
}

}  // namespace
}  // namespace chai::testing
