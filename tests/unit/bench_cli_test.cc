// `chai bench` latency mode through the real binary: --compare runs every shape dense and with
// CHAI and reports the speedup beside the byte bound, computed from the runs it reports; the
// CHAI_* tuning variables it ran under are printed and recorded; bad flags end in one line.
#include <filesystem>
#include <regex>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "runtime/cli/build_info.h"
#include "runtime/json.h"
#include "tests/support/chai_cli.h"
#include "tests/support/test_paths.h"

namespace chai::testing {
namespace {

namespace fs = std::filesystem;

const std::string kFixture = FixtureDir("opt-preln");  // 4 heads, committed: no ../shared needed
const std::string kShapes = "--batch 1,2 --input-len 8,12 --output-len 4 --warmup 0 --iters 1";

const std::string kOneShape = "--batch 1 --input-len 8 --output-len 4 --warmup 0 --iters 1";

// `chai ARGS --json FILE` (with the VAR=value words of `env`): its exit code and output, and the
// JSON it wrote, read back (the file removed).
struct RunWithJson {
  ChaiCliResult cli;
  absl::StatusOr<Json> json;
};

RunWithJson RunChaiJson(const std::string& args, const std::string& name, const std::string& env = "") {
  const std::string path = fs::temp_directory_path() / ("chai_bench_cli_" + name);
  RunWithJson r{RunChaiCli(absl::StrCat(args, " --json ", path), env), absl::NotFoundError("not run")};
  r.json = ReadJsonFile(path);
  fs::remove(path);
  return r;
}

// The decode steps of the timed iterations (output length - 1 per generation: the first token comes
// from the prefill), and of them those enqueued ahead: none on the CPU, where no step is replayed from
// a graph behind the device's work.
TEST(BenchCli, RecordsTheDecodeStepsAndThoseEnqueuedAhead) {
  const auto [r, parsed] = RunChaiJson(
      absl::StrCat("bench --model ", kFixture, " --batch 2 --input-len 8 --output-len 5 --warmup 1 --iters 3"),
      "steps.json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const Json& run = parsed->Find("runs")->as_array().at(0);
  ASSERT_NE(run.Find("decode_steps"), nullptr);
  EXPECT_EQ(run.Find("decode_steps")->as_double(), 3 * (5 - 1));
  ASSERT_NE(run.Find("decode_steps_ahead"), nullptr);
  EXPECT_EQ(run.Find("decode_steps_ahead")->as_double(), 0);
  EXPECT_NE(r.err.find("0 of 4 steps enqueued ahead"), std::string::npos) << r.err;
}

TEST(BenchCli, CompareNeedsASchedule) {
  ExpectChaiCliError("bench --model " + kFixture + " --compare", "--compare needs a CHAI schedule");
}

TEST(BenchCli, CompareIsALatencyFlag) {
  ExpectChaiCliError("bench --mode throughput --model " + kFixture + " --chai 4,2 --compare", "--compare");
}

TEST(BenchCli, CompareReportsSpeedupBesideTheByteBound) {
  const auto [r, parsed] = RunChaiJson(absl::StrCat("bench --model ", kFixture, " --chai 4,2 --compare ", kShapes),
                                       "compare.json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("| mode | batch |"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("dense vs CHAI (4,2)"), std::string::npos) << r.out;
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const auto& runs = parsed->Find("runs")->as_array();
  const auto& cmp = parsed->Find("comparison")->as_array();
  ASSERT_EQ(runs.size(), 8u);  // 4 shapes x (dense, CHAI), alternating
  ASSERT_EQ(cmp.size(), 4u);
  for (size_t i = 0; i < cmp.size(); ++i) {
    const Json& dense = runs[2 * i];
    const Json& chai = runs[2 * i + 1];
    SCOPED_TRACE(i);
    EXPECT_EQ(dense.Find("mode")->as_string(), "dense");
    EXPECT_EQ(chai.Find("mode")->as_string(), "chai");
    EXPECT_EQ(cmp[i].Find("batch")->as_double(), dense.Find("batch")->as_double());
    EXPECT_EQ(cmp[i].Find("input_len")->as_double(), chai.Find("input_len")->as_double());
    const auto bytes = [](const Json& run) {
      return run.Find("weight_bytes_read_per_step")->as_double() + run.Find("kv_bytes_read_per_step")->as_double();
    };
    const double speedup = dense.Find("tpot_ms")->as_double() / chai.Find("tpot_ms")->as_double();
    const double bound = bytes(dense) / bytes(chai);
    // The JSON keeps 9 significant digits.
    EXPECT_NEAR(cmp[i].Find("speedup")->as_double(), speedup, 1e-7 * speedup);
    EXPECT_NEAR(cmp[i].Find("byte_bound")->as_double(), bound, 1e-7 * bound);
    // Schedule 4,2: the second layer keeps K of 2 of its 4 heads, so CHAI reads fewer KV bytes.
    EXPECT_GT(bound, 1.0);
    EXPECT_LT(chai.Find("kv_bytes_per_token")->as_double(), dense.Find("kv_bytes_per_token")->as_double());
  }
}

TEST(BenchCli, RecordsTheTuningEnvironment) {
  const auto [r, parsed] = RunChaiJson(absl::StrCat("bench --model ", kFixture, " ", kOneShape), "env.json",
                                       "CHAI_PDL=1 CHAI_DECODE_V4_PV_EARLY=0");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // The line lists what the caller's environment held too (e.g. CHAI_NUM_THREADS), sorted.
  const size_t line = r.out.find("tuning environment: ");
  ASSERT_NE(line, std::string::npos) << r.out;
  const std::string text = r.out.substr(line, r.out.find('\n', line) - line);
  const size_t early = text.find(" CHAI_DECODE_V4_PV_EARLY=0"), pdl = text.find(" CHAI_PDL=1");
  EXPECT_NE(early, std::string::npos) << text;
  EXPECT_NE(pdl, std::string::npos) << text;
  EXPECT_LT(early, pdl) << text;
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const Json* env = parsed->Find("environment");
  ASSERT_NE(env, nullptr);
  ASSERT_NE(env->Find("CHAI_PDL"), nullptr);
  EXPECT_EQ(env->Find("CHAI_PDL")->as_string(), "1");
  ASSERT_NE(env->Find("CHAI_DECODE_V4_PV_EARLY"), nullptr);
  EXPECT_EQ(env->Find("CHAI_DECODE_V4_PV_EARLY")->as_string(), "0");
}

// --mode throughput's JSON: every request accounted for. With fixed lengths and no stop tokens the
// token counts follow from the request definitions alone.
TEST(BenchCli, ThroughputJsonCountsEveryRequest) {
  const auto [r, parsed] = RunChaiJson(absl::StrCat("bench --mode throughput --model ", kFixture,
                                                    " --num-requests 5 --input-len-dist fixed:6 --output-len-dist "
                                                    "fixed:4 --max-prefill-tokens 8 --no-progress"),
                                       "throughput.json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("| requests/s | output tokens/s |"), std::string::npos) << r.out;
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const Json& j = *parsed;
  EXPECT_EQ(j.Find("mode")->as_string(), "throughput");
  EXPECT_EQ(j.Find("num_requests")->as_double(), 5);
  EXPECT_EQ(j.Find("request_rate")->as_string(), "inf");
  EXPECT_EQ(j.Find("max_prefill_tokens")->as_double(), 8);
  EXPECT_EQ(j.Find("completed")->as_double(), 5);
  EXPECT_EQ(j.Find("failed")->as_double(), 0);
  EXPECT_EQ(j.Find("input_tokens")->as_double(), 5 * 6);
  EXPECT_EQ(j.Find("output_tokens")->as_double(), 5 * 4);
  EXPECT_GE(j.Find("steps")->as_double(), 4);  // at least one step per generated token of a request
  EXPECT_GT(j.Find("kv_blocks")->as_double(), 0);
  for (const char* key : {"ttft", "tpot"}) {
    SCOPED_TRACE(key);
    const Json* p = j.Find(key);
    ASSERT_NE(p, nullptr);
    EXPECT_LE(p->Find("p50_ms")->as_double(), p->Find("p90_ms")->as_double());
    EXPECT_LE(p->Find("p90_ms")->as_double(), p->Find("p99_ms")->as_double());
    EXPECT_GT(p->Find("mean_ms")->as_double(), 0);
  }
}

// The floor's denominator names what it measured: the copy size in the JSON and on stderr (256 MiB
// memcpy on the CPU backend; 1 GiB, or the halving that fits beside the KV pool, on a GPU).
TEST(BenchCli, ReportsTheCopySizeOfItsFloor) {
  const auto [r, parsed] = RunChaiJson(absl::StrCat("bench --model ", kFixture, " ", kOneShape), "copy.json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("(copies of 256 MiB)"), std::string::npos) << r.err;
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const Json& run = parsed->Find("runs")->as_array()[0];
  ASSERT_NE(run.Find("copy_bytes"), nullptr);
  EXPECT_EQ(run.Find("copy_bytes")->as_double(), double(size_t{1} << 28));
  EXPECT_GT(run.Find("copy_bandwidth_gbs")->as_double(), 0.0);
}

// A shape the KV cache cannot hold is a row of the sweep's table, and the others still run; when
// none fits, nothing was measured: one error line and a non-zero exit.
TEST(BenchCli, ShapesThatDoNotFitAreRowsUnlessNoneFits) {
  const std::string sweep = "--batch 1,64 --input-len 8 --output-len 4 --warmup 0 --iters 1";
  const ChaiCliResult some = RunChaiCli(absl::StrCat("bench --model ", kFixture, " ", sweep, " --kv-cache-gb 0.0001"));
  ASSERT_EQ(some.exit_code, 0) << some.err;
  EXPECT_NE(some.out.find("| 1 | 8 | 4 | "), std::string::npos) << some.out;
  EXPECT_EQ(some.out.find("| 1 | 8 | 4 | does not fit"), std::string::npos) << some.out;
  EXPECT_NE(some.out.find("| 64 | 8 | 4 | does not fit: "), std::string::npos) << some.out;

  const ChaiCliResult none = RunChaiCli(absl::StrCat("bench --model ", kFixture, " ", sweep, " --kv-cache-gb 0.00001"));
  EXPECT_EQ(none.exit_code, 1);
  EXPECT_NE(none.out.find("| 1 | 8 | 4 | does not fit"), std::string::npos) << none.out;
  EXPECT_EQ(none.err, "chai: error: no shape fits the KV cache (each row above says why): raise --kv-cache-gb, or "
                      "lower --batch or --input-len\n");
}

// Throughput requests longer than the model's positions are refused before the model loads, and a
// request larger than the whole KV cache says which flag to change.
TEST(BenchCli, ThroughputRequestsThatCannotRun) {
  const std::string args = "bench --mode throughput --model " + kFixture + " --num-requests 3 --no-progress ";
  ExpectChaiCliError(args + "--input-len-dist fixed:60 --output-len-dist fixed:10",
                     "--input-len-dist up to 60 + --output-len-dist up to 10 need 70 positions; the model has 64");
  ExpectChaiCliError(args + "--input-len-dist fixed:8 --output-len-dist fixed:4 --kv-cache-gb 0.00001",
                     "request 0 needs 16 KV blocks, the pool has 5 (shorten --input-len-dist/--output-len-dist, or "
                     "raise --kv-cache-gb)");
}

// The build line from its parts: the CUDA architectures listed, and a variant build's kernel knobs
// (CMAKE_CUDA_FLAGS' -DCHAI_* definitions) named so that its benchmark output says which build it is.
TEST(BenchCli, DescribesTheBuildsKnobs) {
  EXPECT_EQ(DescribeBuild("0123456789ab", "", ""), "chai 0123456789ab, CPU only");
  EXPECT_EQ(DescribeBuild("0123456789ab", "90", ""), "chai 0123456789ab, CUDA backend for sm_90");
  EXPECT_EQ(DescribeBuild("unknown", "90;100", ""), "chai unknown, CUDA backend for sm_90, sm_100");
  EXPECT_EQ(DescribeBuild("0123456789ab-dirty", "90", "-DCHAI_GEMV_L2_HINT=256 -DCHAI_V4_CLUSTER_STAGE_KB=32"),
            "chai 0123456789ab-dirty, CUDA backend for sm_90, built with -DCHAI_GEMV_L2_HINT=256 "
            "-DCHAI_V4_CLUSTER_STAGE_KB=32");
}

// `chai --version` names the build (its git revision, or "unknown" outside a checkout, and the
// backends); bench prints the same line first and records the revision and the line in its JSON, so
// a results table can name the code it measured.
TEST(BenchCli, RecordsTheBuild) {
  const ChaiCliResult version = RunChaiCli("--version");
  ASSERT_EQ(version.exit_code, 0) << version.err;
  const std::regex line(
      R"(chai (unknown|[0-9a-f]{7,40}(-dirty)?), (CPU only|CUDA backend for sm_[0-9a-z]+(, sm_[0-9a-z]+)*))"
      R"((, built with -DCHAI_\S+( -DCHAI_\S+)*)?\n)");
  std::smatch m;
  ASSERT_TRUE(std::regex_match(version.out, m, line)) << version.out;
  const std::string revision = m[1].str();

  const auto [r, parsed] = RunChaiJson(absl::StrCat("bench --model ", kFixture, " ", kOneShape), "build.json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.substr(0, r.out.find('\n') + 1), version.out);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  ASSERT_NE(parsed->Find("chai_revision"), nullptr);
  EXPECT_EQ(parsed->Find("chai_revision")->as_string(), revision);
  ASSERT_NE(parsed->Find("chai_build"), nullptr);
  EXPECT_EQ(parsed->Find("chai_build")->as_string() + "\n", version.out);
}

}  // namespace
}  // namespace chai::testing
