// Every malformed input ends in a one-line error naming the problem and a non-zero exit:
// checkpoints (truncated, hostile headers, missing or misshapen tensors), configs and flags.
// Runs the real `chai` binary, as a user would.

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/device_info.h"
#include "runtime/json.h"
#include "runtime/safetensors.h"
#include "tests/support/chai_cli.h"
#include "tests/support/test_paths.h"

namespace chai::testing {
namespace {

namespace fs = std::filesystem;

// One line, starting with "chai: error:", mentioning `needle` (tests/support/chai_cli.h).
void ExpectError(const std::string& args, const std::string& needle) { ExpectChaiCliError(args, needle); }

class BadCheckpoint : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / absl::StrCat("chai_bad_ckpt_", ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    fs::copy_file(FixtureDir("opt-preln") + "/config.json", dir_ + "/config.json");
  }
  void TearDown() override { fs::remove_all(dir_); }

  void WriteRaw(const std::string& bytes) {
    std::ofstream(dir_ + "/model.safetensors", std::ios::binary) << bytes;
  }
  static std::string Header(const std::string& json) {
    std::string len(8, '\0');
    uint64_t n = json.size();
    for (int i = 0; i < 8; ++i) len[i] = static_cast<char>((n >> (8 * i)) & 0xFF);
    return len + json;
  }
  std::string Args() const { return absl::StrCat("generate --model ", dir_, " --prompt-ids 5,6 --max-new-tokens 2"); }

  std::string dir_;
};

TEST_F(BadCheckpoint, MissingFile) { ExpectError(Args(), "no model.safetensors"); }
// Flags and tuning variables are checked before the checkpoint is opened (a large model's load
// takes minutes): here the missing weights file is never reached.
TEST_F(BadCheckpoint, SettingsCheckedBeforeTheWeights) {
  ExpectError(Args() + " --kv-block-size 7", "--kv-block-size must be between 8 and 4096");
  ExpectError(Args() + " --max-seq-len 100000", "exceeds OPT's learned positions");
  ExpectError(Args() + " --dtype fp16", "--device cpu computes in fp32");
  ExpectError(Args() + " --chai /nonexistent/schedule.json", "--chai: no such schedule file");
  ExpectError(Args() + " --max-seq-len 8 --max-new-tokens 16", "need 18 positions; the model has 8");
  setenv("CHAI_DECODE_FUSION", "fast", 1);
  ExpectError(Args(), "CHAI_DECODE_FUSION must be none, activation (or silu) or all");
  unsetenv("CHAI_DECODE_FUSION");
}
TEST_F(BadCheckpoint, TooShortForHeaderLength) {
  WriteRaw("abc");
  ExpectError(Args(), "truncated");
}
TEST_F(BadCheckpoint, OversizedHeader) {
  WriteRaw(std::string("\xff\xff\xff\xff\xff\xff\x00\x00", 8) + "{}");
  ExpectError(Args(), "too large");
}
TEST_F(BadCheckpoint, HeaderPastEnd) {
  WriteRaw(std::string("\x40\x00\x00\x00\x00\x00\x00\x00", 8) + "{}");
  ExpectError(Args(), "truncated");
}
TEST_F(BadCheckpoint, NonJsonHeader) {
  WriteRaw(Header("this is not json"));
  ExpectError(Args(), "not valid JSON");
}
TEST_F(BadCheckpoint, OffsetsOutOfRange) {
  WriteRaw(Header(R"({"x":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})") + "1234");
  ExpectError(Args(), "out of range");
}
TEST_F(BadCheckpoint, OffsetsDisagreeWithShape) {
  WriteRaw(Header(R"({"x":{"dtype":"F32","shape":[4],"data_offsets":[0,8]}})") + std::string(16, '\0'));
  ExpectError(Args(), "do not match");
}
TEST_F(BadCheckpoint, UnknownDtype) {
  WriteRaw(Header(R"({"x":{"dtype":"F8_E9","shape":[1],"data_offsets":[0,1]}})") + "1");
  ExpectError(Args(), "unknown dtype");
}
TEST_F(BadCheckpoint, MissingTensor) {
  Tensor t = Tensor::Zeros({2}, DType::kF32);
  ASSERT_TRUE(WriteSafetensors(dir_ + "/model.safetensors", {{"unrelated", t}}).ok());
  ExpectError(Args(), "missing tensor");
}
TEST_F(BadCheckpoint, WrongShape) {
  // The real fixture's tensors, with the token embedding swapped for one of the wrong width.
  auto good = SafetensorsFile::Open(FixtureDir("opt-preln") + "/model.safetensors");
  ASSERT_TRUE(good.ok());
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const std::string& name : (*good)->Names()) {
    Tensor t = *(*good)->Get(name);
    if (name == "model.decoder.embed_tokens.weight") t = Tensor::Zeros({t.dim(0), t.dim(1) + 1}, DType::kF32);
    tensors.emplace_back(name, t);
  }
  ASSERT_TRUE(WriteSafetensors(dir_ + "/model.safetensors", tensors).ok());
  ExpectError(Args(), "has shape");
}
TEST_F(BadCheckpoint, TruncatedData) {
  std::ifstream in(FixtureDir("opt-preln") + "/model.safetensors", std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  WriteRaw(bytes.substr(0, bytes.size() - 100));
  ExpectError(Args(), "out of range");
}
TEST_F(BadCheckpoint, UnsupportedArchitecture) {
  std::ofstream(dir_ + "/config.json") << R"({"model_type": "gpt2", "vocab_size": 10})";
  ExpectError(Args(), "unsupported architecture");
}
TEST_F(BadCheckpoint, ConfigNotJson) {
  std::ofstream(dir_ + "/config.json") << "{oops";
  ExpectError(Args(), "invalid JSON");
}
TEST_F(BadCheckpoint, ConfigMissingKey) {
  std::ofstream(dir_ + "/config.json") << R"({"model_type": "opt", "vocab_size": 10})";
  ExpectError(Args(), "missing key");
}

TEST(BadFlags, Errors) {
  const std::string model = "--model " + FixtureDir("opt-preln");
  ExpectError("generate --bogus 1", "unknown flag --bogus");
  ExpectError("generate " + model + " --prompt-ids 1,x", "not an integer");
  ExpectError("generate " + model + " --prompt-ids 1,99999", "out of range");
  ExpectError("generate " + model + " --prompt-ids 1 --max-new-tokens", "needs a value");
  ExpectError("generate " + model + " --prompt-ids 1 --max-new-tokens ten", "expects an integer");
  ExpectError("generate " + model + " --prompt-ids 1 --temperature 0", "--temperature must be > 0");
  ExpectError("generate " + model + " --prompt-ids 1 --top-p 1.5", "--top-p");
  ExpectError("generate " + model + " --prompt-ids 1 --dtype fp8", "--dtype");
  ExpectError("generate " + model + " --prompt-ids 1 --device tpu", "--device");
  ExpectError("generate " + model + " --prompt-ids 1 --dtype fp16", "--dtype fp32");
  ExpectError("generate --model /nonexistent/model --prompt-ids 1", "no such file");
  ExpectError("generate --model /nonexistent/model --prompt hello", "no such file");
  // More positions than the model has: refused before any output (the fixture's OPT has 64 or more).
  ExpectError("generate " + model + " --prompt-ids 1,2,3 --max-seq-len 4 --max-new-tokens 8",
              "the prompt's 3 tokens + --max-new-tokens 8 need 11 positions; the model has 4");
  ExpectError("bench " + model + " --input-len 4 --output-len 8 --max-seq-len 8",
              "--input-len 4 + --output-len 8 need 12");
  ExpectError("generate --model " + SourceDir() + "/configs/models/opt-125m.json --prompt-ids 1", "--random-weights");
  ExpectError("generate " + model, "exactly one of --prompt");
  ExpectError("generate " + model + " --prompt hi --prompt-ids 1", "exactly one of --prompt");
  ExpectError("generate " + model + " --prompt hello", "needs a tokenizer");
  ExpectError("frobnicate", "unknown command");
  // Output files and bench's lists, checked before the model loads (not after minutes of work).
  ExpectError("generate " + model + " --prompt-ids 1 --json /nonexistent/dir/out.json", "--json: no such directory");
  ExpectError("bench " + model + " --json /nonexistent/dir/out.json", "--json: no such directory");
  ExpectError("bench --mode throughput " + model + " --json /nonexistent/dir/out.json", "--json: no such directory");
  ExpectError("eval " + model + " --data " + FixtureDir("opt-preln") + "/config.json --json /nonexistent/dir/out.json",
              "--json: no such directory");
  // An output path that is a folder (bench had run its whole sweep before "cannot write").
  const std::string folder = std::filesystem::temp_directory_path().string();
  ExpectError("bench " + model + " --json " + folder, "--json: " + folder + " is a directory, not a file");
  ExpectError("generate " + model + " --prompt-ids 1 --json " + folder, "is a directory, not a file");
  // A model folder without a config says so, not that --prompt needs a tokenizer.
  const std::filesystem::path empty_model = std::filesystem::temp_directory_path() / "chai_bad_input_empty_model";
  std::filesystem::create_directories(empty_model);
  ExpectError("generate --model " + empty_model.string() + " --prompt hello",
              "cannot open " + (empty_model / "config.json").string());
  ExpectError("bench " + model + " --batch 1,,8", "--batch expects positive integers");
  ExpectError("bench " + model + " --input-len 4,", "--input-len expects positive integers");
  ExpectError("bench " + model + " --output-len 1", "--output-len must be >= 2");
  ExpectError("bench " + model + " --iters 0", "--iters >= 1");
  ExpectError("bench --mode throughput " + model + " --max-prefill-tokens 0", "--max-prefill-tokens must be >= 1");
  // 0 is these settings' "chosen for you"; given explicitly it is an error, not the default.
  ExpectError("generate " + model + " --prompt-ids 1 --kv-cache-gb 0", "--kv-cache-gb must be positive, got '0'");
  ExpectError("generate " + model + " --prompt-ids 1 --max-seq-len 0", "--max-seq-len must be positive, got '0'");
  ExpectError("bench " + model + " --max-seq-len=-4", "--max-seq-len must be positive, got '-4'");
}

// Memory a run cannot have is refused with one line before it is allocated: a batch whose KV cache
// would take terabytes (it had aborted in the host allocator), a --kv-cache-gb past what a pool can
// number or too small for one block, and on the CPU weights larger than the host's available
// memory (before a load of minutes).
TEST(BadFlags, MemoryTheRunCannotHave) {
  const std::string model = "--model " + FixtureDir("opt-preln");
  const int64_t available = AvailableHostMemory();
  if (available > 0 && available < (int64_t{1} << 40)) {
    ExpectError("bench " + model + " --batch 99999999 --input-len 2 --output-len 2",
                "the KV cache for 99999999 sequences of 4 positions needs 3051.76 GiB per rank (1 on this host)");
    ExpectError("generate " + model + " --prompt-ids 1 --kv-cache-gb 2048",
                "the KV cache for --kv-cache-gb 2048 needs 2048.00 GiB per rank");
  }
  ExpectError("generate " + model + " --prompt-ids 1 --kv-cache-gb 1e30",
              "the KV cache for --kv-cache-gb 1e+30 would need more than 2147483647 blocks of 2048 bytes");
  ExpectError("generate " + model + " --prompt-ids 1 --kv-cache-gb 0.0000001",
              "--kv-cache-gb 1e-07 holds no KV block of 2048 bytes");
  // OPT-66B in fp32 (245 GiB) on this host's CPU, unless it really has the memory.
  if (available > 0 && available < (int64_t{240} << 30)) {
    ExpectError("generate --model " + SourceDir() + "/configs/models/opt-66b.json --random-weights --prompt-ids 1",
                "opt-66b.json needs at least 244.8 GiB of fp32 weights per rank (1 on this host) but the host has");
  }
}

// --device cuda where it cannot run says why: a CPU-only build has no CUDA backend; a CUDA build
// with no GPU visible says so (here forced by an empty CUDA_VISIBLE_DEVICES).
TEST(BadFlags, CudaWhereItCannotRun) {
  const ChaiCliResult version = RunChaiCli("--version");
  ASSERT_EQ(version.exit_code, 0) << version.err;
  const std::string args = "generate --model " + FixtureDir("opt-preln") + " --prompt-ids 1,2 --device cuda --dtype fp16";
  if (version.out.find("CPU only") != std::string::npos) {
    ExpectError(args, "--device cuda: this build has no CUDA backend");
    return;
  }
  const char* before = std::getenv("CUDA_VISIBLE_DEVICES");
  const std::string saved = before != nullptr ? before : "";
  setenv("CUDA_VISIBLE_DEVICES", "", 1);
  ExpectError(args, "--device cuda: no GPU is visible to this process (CUDA_VISIBLE_DEVICES='')");
  if (before != nullptr) {
    setenv("CUDA_VISIBLE_DEVICES", saved.c_str(), 1);
  } else {
    unsetenv("CUDA_VISIBLE_DEVICES");
  }
}

// CHAI_NUM_THREADS must be a thread count (it had fallen back to the hardware's silently), and
// --threads wins over it: a run with both takes the flag's count without complaint. Both are
// capped (100000 threads had aborted the process on the first thread the system refused).
TEST(BadFlags, ThreadCountVariable) {
  const std::string args = "generate --model " + FixtureDir("opt-preln") + " --prompt-ids 1,2 --max-new-tokens 2";
  for (const char* bad : {"abc", "0", "-3", "100000"}) {
    setenv("CHAI_NUM_THREADS", bad, 1);
    ExpectError(args, absl::StrCat("CHAI_NUM_THREADS must be an integer from 1 to 4096, got '", bad, "'"));
  }
  unsetenv("CHAI_NUM_THREADS");
  for (const char* bad : {"-2", "100000"}) {
    ExpectError(args + " --threads " + bad,
                absl::StrCat("--threads must be between 1 and 4096 (0: the default), got ", bad));
  }
  const ChaiCliResult with_flag = RunChaiCli(args + " --threads 2");
  EXPECT_EQ(with_flag.exit_code, 0) << with_flag.err;
  setenv("CHAI_NUM_THREADS", "2", 1);
  const ChaiCliResult good = RunChaiCli(args);
  EXPECT_EQ(good.exit_code, 0) << good.err;
  unsetenv("CHAI_NUM_THREADS");
}

// The CHAI options are checked with CHAI off too.
TEST(BadFlags, ChaiOptionsWithoutSchedule) {
  const std::string args = "generate --model " + FixtureDir("opt-preln") + " --prompt-ids 1,2 --max-new-tokens 2";
  ExpectError(args + " --chai-cluster foo", "unknown CHAI clustering \"foo\"");
  ExpectError(args + " --chai-rep foo", "unknown CHAI representative \"foo\"");
}

// A tuning variable with a value it does not know is an error, not a silent default; the values
// it knows run.
TEST(BadFlags, UnknownDecodeFusion) {
  const std::string args = "generate --model " + FixtureDir("llama-gqa") + " --prompt-ids 1,2 --max-new-tokens 2";
  for (const char* mode : {"none", "activation", "silu", "all"}) {
    setenv("CHAI_DECODE_FUSION", mode, 1);
    const ChaiCliResult r = RunChaiCli(args);
    EXPECT_EQ(r.exit_code, 0) << mode << ": " << r.err;
  }
  setenv("CHAI_DECODE_FUSION", "fast", 1);
  ExpectError(args, "CHAI_DECODE_FUSION must be none, activation (or silu) or all, got 'fast'");
  unsetenv("CHAI_DECODE_FUSION");
}


// The 0|1 switches of the decode step. Each is checked everywhere, also where it changes nothing
// (CHAI_ALLREDUCE_IN_GEMV acts at TP > 1 on GPUs only, CHAI_DECODE_QKV_APPEND and CHAI_DECODE_PIPELINE on GPUs
// only).
TEST(BadFlags, UnknownZeroOrOneSwitches) {
  const std::string args = "generate --model " + FixtureDir("llama-gqa") + " --prompt-ids 1,2 --max-new-tokens 2";
  for (const char* name : {"CHAI_DECODE_QKV_APPEND", "CHAI_DECODE_PIPELINE", "CHAI_ALLREDUCE_IN_GEMV"}) {
    for (const char* v : {"0", "1"}) {
      setenv(name, v, 1);
      const ChaiCliResult r = RunChaiCli(args);
      EXPECT_EQ(r.exit_code, 0) << name << "=" << v << ": " << r.err;
    }
    for (const char* v : {"yes", "on", "2", ""}) {
      setenv(name, v, 1);
      ExpectError(args, std::string(name) + " must be 0 or 1, got '" + v + "'");
    }
    unsetenv(name);
  }
}

TEST(BadFlags, UnknownL2PrefetchBudget) {
  const std::string args = "generate --model " + FixtureDir("llama-gqa") + " --prompt-ids 1,2 --max-new-tokens 2";
  for (const char* v : {"0,0", "16,8", "12.5,4,alt", "0,6,rows"}) {
    setenv("CHAI_L2_PREFETCH", v, 1);
    const ChaiCliResult r = RunChaiCli(args);
    EXPECT_EQ(r.exit_code, 0) << v << ": " << r.err;
  }
  for (const char* v : {"16", "16,8,fast", "-1,0", "a,b", "", "4096,0", "1,2,alt,3"}) {
    setenv("CHAI_L2_PREFETCH", v, 1);
    ExpectError(args, std::string("CHAI_L2_PREFETCH must be <attention MB>,<norm MB>[,alt|rows] with MB from 0 to "
                                  "1024, got '") + v + "'");
  }
  unsetenv("CHAI_L2_PREFETCH");
}

TEST(BadFlags, PromptLongerThanTheModelAllows) {
  std::string ids = "1";
  for (int i = 0; i < 70; ++i) ids += ",3";  // opt-preln has 64 positions
  ExpectError("generate --model " + FixtureDir("opt-preln") + " --prompt-ids " + ids,
              "the prompt's 71 tokens + --max-new-tokens 32 need 103 positions; the model has 64");
}

}  // namespace
}  // namespace chai::testing

namespace chai::testing {
namespace {

// Text in, text out: the prompt is encoded with the checkpoint's tokenizer (OPT prepends </s>)
// and the JSON carries the decoded continuation.
TEST(GenerateText, PromptIsTokenizedAndOutputDecoded) {
  if (!SharedAvailable()) GTEST_SKIP() << "../shared is absent: skipping the text prompt test";
  const std::string out = fs::temp_directory_path() / "chai_text_prompt.json";
  const std::string cmd = absl::StrCat(ChaiBinary(), " generate --model ", SharedDir(),
                                       "/models/opt-tiny-docs --prompt 'The Debian package manager' "
                                       "--max-new-tokens 8 --json ", out, " >/dev/null");
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  auto json = ReadJsonFile(out);
  ASSERT_TRUE(json.ok()) << json.status();
  // Hugging Face's tokenizer gives these ids for the prompt (</s> first).
  EXPECT_EQ(json->Find("prompt_ids")->Dump(), "[1,477,1448,67,2221,1931,4804]");
  ASSERT_NE(json->Find("text"), nullptr);
  EXPECT_FALSE(json->Find("text")->as_string().empty());
}

}  // namespace
}  // namespace chai::testing
