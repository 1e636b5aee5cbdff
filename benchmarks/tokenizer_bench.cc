// Encode (and decode) throughput of the tokenizers, single-threaded, in MB/s of UTF-8 input.
//
// Corpus: the repository's own sources and docs (code, comments, Markdown) plus the multilingual
// golden test texts, about 0.6 MB of distinct text, repeated to --mb megabytes. "first pass" runs a
// freshly loaded tokenizer over the distinct text once (the word cache starts empty); "steady"
// is the median of several passes over the whole corpus, by wall clock and by this thread's CPU
// time (the second is the fairer number on a shared, oversubscribed machine).
//
// Usage: tokenizer_bench [--mb N] [--passes N] [--dump FILE]   (--dump writes the corpus, to time
// other tokenizers on the same text)
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "runtime/json.h"
#include "runtime/tokenizer/tokenizer.h"

namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

std::string ReadAll(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Repository text: sources and docs, build directories and fixtures excluded.
std::string DistinctCorpus(const std::string& root) {
  std::vector<std::filesystem::path> files;
  for (auto it = std::filesystem::recursive_directory_iterator(root); it != std::filesystem::recursive_directory_iterator(); ++it) {
    const std::string name = it->path().filename().string();
    if (it->is_directory() && (name.rfind("build", 0) == 0 || name == ".git" || name == "fixtures")) {
      it.disable_recursion_pending();
      continue;
    }
    const std::string ext = it->path().extension().string();
    if (it->is_regular_file() && (ext == ".cc" || ext == ".h" || ext == ".md" || ext == ".py" || ext == ".cu")) {
      files.push_back(it->path());
    }
  }
  std::sort(files.begin(), files.end());
  std::string text;
  for (const auto& f : files) text += ReadAll(f);
  auto goldens = chai::ReadJsonFile(root + "/tests/fixtures/tokenizers/gpt2_bytelevel.goldens.json");
  if (goldens.ok()) {
    for (const chai::Json& c : goldens->Find("cases")->as_array()) text += c.Find("text")->as_string() + "\n";
  }
  return text;
}

double ThreadCpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  double mb = 8;
  int passes = 5;
  const char* dump = nullptr;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--mb")) mb = std::atof(argv[i + 1]);
    if (!std::strcmp(argv[i], "--passes")) passes = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--dump")) dump = argv[i + 1];
  }
  const std::string root = CHAI_SOURCE_DIR;
  const std::string fixtures = root + "/tests/fixtures/tokenizers/";
  const std::string distinct = DistinctCorpus(root);
  std::string corpus;
  while (corpus.size() < mb * 1e6) corpus += distinct;
  if (dump != nullptr) std::ofstream(dump, std::ios::binary) << corpus;

  struct Entry {
    const char* name;
    const char* kind;
    std::string location;
  };
  const std::vector<Entry> entries = {
      {"opt-tiny-docs", "byte-level BPE (tokenizer.json)", root + "/../shared/models/opt-tiny-docs"},
      {"gpt2_bytelevel", "byte-level BPE (tokenizer.json)", fixtures + "gpt2_bytelevel"},
      {"gpt2_files", "byte-level BPE (vocab+merges)", fixtures + "gpt2_files"},
      {"llama3_style", "byte-level BPE, LLaMA-3 regex", fixtures + "llama3_style"},
      {"llama2_legacy", "SentencePiece-style BPE", fixtures + "llama2_legacy"},
      {"llama_metaspace", "SentencePiece-style BPE", fixtures + "llama_metaspace"},
      {"sp_llama", "libsentencepiece", fixtures + "sp_llama"},
  };

  std::printf("tokenizer encode throughput, single thread; distinct text %.2f MB, corpus %.2f MB, %d passes\n",
              distinct.size() / 1e6, corpus.size() / 1e6, passes);
  std::printf("%-16s %-32s %8s %10s %11s %12s %12s %12s\n", "tokenizer", "kind", "load ms", "tokens/KB",
              "first MB/s", "steady MB/s", "steady (cpu)", "decode MB/s");
  for (const Entry& e : entries) {
    const auto t0 = Clock::now();
    auto tok = chai::Tokenizer::FromDirectory(e.location);
    const auto t1 = Clock::now();
    if (!tok.ok()) {
      std::printf("%-16s skipped: %s\n", e.name, std::string(tok.status().message()).c_str());
      continue;
    }
    const auto f0 = Clock::now();
    const size_t first_tokens = (*tok)->Encode(distinct).size();
    const auto f1 = Clock::now();
    std::vector<double> encode_s, encode_cpu_s, decode_s;
    std::vector<int32_t> ids;
    for (int p = 0; p < passes; ++p) {
      const double cpu = ThreadCpuSeconds();
      const auto a = Clock::now();
      ids = (*tok)->Encode(corpus);
      const auto b = Clock::now();
      encode_cpu_s.push_back(ThreadCpuSeconds() - cpu);
      const std::string back = (*tok)->Decode(ids);
      const auto c = Clock::now();
      encode_s.push_back(Seconds(a, b));
      decode_s.push_back(Seconds(b, c));
    }
    std::printf("%-16s %-32s %8.1f %10.1f %11.1f %12.1f %12.1f %12.1f\n", e.name, e.kind, Seconds(t0, t1) * 1e3,
                first_tokens / (distinct.size() / 1e3), distinct.size() / 1e6 / Seconds(f0, f1),
                corpus.size() / 1e6 / Median(encode_s), corpus.size() / 1e6 / Median(encode_cpu_s),
                corpus.size() / 1e6 / Median(decode_s));
  }
  return 0;
}
