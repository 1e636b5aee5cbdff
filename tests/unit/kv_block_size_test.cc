// `--kv-block-size`: the cache's block size changes where positions live, not what the model
// computes. The real `chai` binary generates on fixtures (MHA, GQA, OPT, LLaMA; CHAI on, whose
// dropped K heads free whole blocks) with blocks of 8, 13, 24 and 64 positions against the
// default 16: same greedy ids, prompt logits within 1e-5 (fp32); and a bad size is a one-line error.
#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "runtime/json.h"
#include "tests/support/engine_helpers.h"
#include "tests/support/test_paths.h"

namespace chai::testing {
namespace {

namespace fs = std::filesystem;

struct Generation {
  std::vector<int32_t> ids;
  std::vector<std::vector<double>> logits;
};

// Runs `chai generate ... --kv-block-size block` and reads its --json.
Generation Generate(const std::string& args, int block) {
  const std::string json = (fs::temp_directory_path() / absl::StrCat("chai_kv_block_", block, ".json")).string();
  const std::string cmd = absl::StrCat(ChaiBinary(), " generate ", args, " --kv-block-size ", block,
                                       " --dump-logits --ignore-eos --json ", json, " >/dev/null 2>&1");
  const int status = std::system(cmd.c_str());
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << cmd;
  Generation g;
  auto parsed = ReadJsonFile(json);
  EXPECT_TRUE(parsed.ok()) << parsed.status();
  if (!parsed.ok()) return g;
  g.ids = JsonIds(*parsed->Find("output_ids"));
  for (const Json& row : parsed->Find("prompt_logits")->as_array()) {
    auto& r = g.logits.emplace_back();
    for (const Json& v : row.as_array()) r.push_back(v.as_double());
  }
  fs::remove(json);
  return g;
}

TEST(KvBlockSize, GenerationDoesNotDependOnIt) {
  const std::string prompt = "--prompt-ids 3,14,15,92,65,35,89,79,32,38,46,26,43 --max-new-tokens 12";
  const std::pair<std::string, std::string> models[] = {{"opt-preln", "4,2"}, {"llama-gqa", "8,4,2"}};
  for (const auto& [model, schedule] : models) {
    for (const std::string& chai : {std::string("off"), schedule}) {
      const std::string args = absl::StrCat("--model ", FixtureDir(model), " ", prompt,
                                            chai == "off" ? "" : " --chai " + chai);
      SCOPED_TRACE(args);
      const Generation reference = Generate(args, 16);
      ASSERT_FALSE(reference.ids.empty());
      for (int block : {8, 13, 24, 64}) {
        const Generation g = Generate(args, block);
        EXPECT_EQ(g.ids, reference.ids) << "block " << block;
        ASSERT_EQ(g.logits.size(), reference.logits.size()) << "block " << block;
        double worst = 0;
        for (size_t r = 0; r < g.logits.size(); ++r) {
          ASSERT_EQ(g.logits[r].size(), reference.logits[r].size());
          for (size_t c = 0; c < g.logits[r].size(); ++c) {
            worst = std::max(worst, std::abs(g.logits[r][c] - reference.logits[r][c]));
          }
        }
        EXPECT_LE(worst, 1e-5) << "block " << block;
      }
    }
  }
}

TEST(KvBlockSize, BadValueIsAOneLineError) {
  for (const std::string bad : {"0", "7", "-4", "5000"}) {
    const std::string err = (fs::temp_directory_path() / "chai_kv_block_err.txt").string();
    const std::string cmd = absl::StrCat(ChaiBinary(), " generate --model ", FixtureDir("opt-preln"),
                                         " --prompt-ids 1,2 --kv-block-size ", bad, " >/dev/null 2>", err);
    const int status = std::system(cmd.c_str());
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 0 && WEXITSTATUS(status) < 128) << bad;
    std::ifstream in(err);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_EQ(text.rfind("chai: error: --kv-block-size must be between 8 and 4096", 0), 0u) << text;
    EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 1) << text;
  }
}

}  // namespace
}  // namespace chai::testing
