// `chai generate`: run a prompt through the model and print (and optionally save) the result.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "runtime/cli/commands.h"
#include "runtime/cli/model_options.h"
#include "runtime/chai/membership_report.h"
#include "runtime/generator.h"
#include "runtime/placement_io.h"
#include "runtime/json.h"
#include "runtime/tokenizer/tokenizer.h"

namespace chai {
namespace {

struct GenerateFlags {
  ModelOptions model;
  std::string prompt_text;
  std::string prompt_ids;
  int max_new_tokens = 32;
  bool greedy = false;
  float temperature = 1.0f;
  int top_k = 0;
  float top_p = 1.0f;
  bool ignore_eos = false;
  std::string json_path;
  bool dump_logits = false;
  bool stats = false;
  bool dump_clusters = false;
  bool help = false;

  void Register(FlagParser* f) {
    model.Register(f);
    f->String("prompt", &prompt_text, "prompt text (needs a tokenizer in the checkpoint directory)");
    f->String("prompt-ids", &prompt_ids, "comma-separated prompt token ids, e.g. 2,100,200");
    f->Int("max-new-tokens", &max_new_tokens, "tokens to generate (default 32)");
    f->Bool("greedy", &greedy, "pick the most likely token (the default unless sampling flags are given)");
    f->Float("temperature", &temperature, "sampling temperature (> 0)");
    f->Int("top-k", &top_k, "sample among the k most likely tokens (0: all)");
    f->Float("top-p", &top_p, "sample from the smallest set with probability mass >= p");
    f->Bool("ignore-eos", &ignore_eos, "keep generating after the end-of-sequence token");
    f->String("json", &json_path, "write prompt_ids, output_ids (and more) to this JSON file");
    f->Bool("dump-logits", &dump_logits, "add prompt_logits (every prompt position) to --json");
    f->Bool("stats", &stats, "print and record KV bytes per token (dense vs actual) and timing");
    f->Bool("dump-clusters", &dump_clusters, "add clusters (representative of each head per layer) to --json");
    f->Bool("help", &help, "show this help");
  }
};

absl::StatusOr<std::vector<int32_t>> ParseIds(const std::string& text) {
  std::vector<int32_t> ids;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    int32_t id;
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(part), &id)) {
      return absl::InvalidArgumentError(absl::StrCat("--prompt-ids: '", part, "' is not an integer token id"));
    }
    ids.push_back(id);
  }
  if (ids.empty()) return absl::InvalidArgumentError("--prompt-ids is empty");
  return ids;
}

bool HasTokenizerFiles(const std::string& dir) {
  namespace fs = std::filesystem;
  return fs::exists(dir + "/tokenizer.json") || fs::exists(dir + "/vocab.json") || fs::exists(dir + "/tokenizer.model");
}

// The checkpoint's tokenizer where the model is a directory with one; null otherwise (a bare
// config with random weights has none).
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizerIfAny(const std::string& model) {
  if (model.empty() || !std::filesystem::is_directory(model) || !HasTokenizerFiles(model)) {
    return std::unique_ptr<Tokenizer>();
  }
  return Tokenizer::FromDirectory(model);
}

// The prompt's ids: --prompt encoded with the tokenizer, or --prompt-ids parsed.
absl::StatusOr<std::vector<int32_t>> ReadPrompt(const GenerateFlags& flags, bool has_text, const Tokenizer* tokenizer) {
  if (!has_text) return ParseIds(flags.prompt_ids);
  if (tokenizer == nullptr) {
    return absl::InvalidArgumentError("--prompt needs a tokenizer (tokenizer.json, vocab.json + merges.txt or "
                                      "tokenizer.model) in the --model directory; use --prompt-ids instead");
  }
  std::vector<int32_t> ids = tokenizer->Encode(flags.prompt_text, /*add_special_tokens=*/true);
  if (ids.empty()) return absl::InvalidArgumentError("--prompt encodes to no tokens");
  return ids;
}

// The request's options from the flags (greedy unless a sampling flag was given).
GenerateOptions MakeGenerateOptions(const GenerateFlags& flags, bool sampling, const LoadedModel& model) {
  GenerateOptions options;
  options.max_new_tokens = flags.max_new_tokens;
  options.sampling.greedy = !sampling;
  options.sampling.temperature = flags.temperature;
  options.sampling.top_k = flags.top_k;
  options.sampling.top_p = flags.top_p;
  options.sampling.seed = static_cast<uint64_t>(flags.model.seed);
  options.eos_token_id = flags.ignore_eos ? -1 : model.config.eos_token_id;
  options.keep_prompt_logits = flags.dump_logits;
  options.chai = model.chai.get();
  return options;
}

// What a finished request reports (rank 0): its ids, timing, KV bytes and, when asked, membership.
struct Report {
  const std::vector<int32_t>& prompt;
  const GenerateResult& result;
  const KvBytes& kv;
  const std::vector<RankKv>& per_rank;
  const std::vector<std::vector<int>>& clusters;

  double TokensPerSecond() const {
    return result.decode_steps > 0 ? result.decode_steps / result.decode_seconds : 0.0;
  }
};

// --stats on stderr: timing, KV bytes per token against dense, and at TP > 1 the per-rank balance.
void PrintStats(const Report& r, int ranks, bool identity_placement) {
  const int64_t k_bytes = r.kv.k_per_token, v_bytes = r.kv.v_per_token;
  std::fprintf(stderr,
               "prefill %.3f s, decode %.3f s (%.1f tokens/s); KV bytes per token %lld (K %lld, V %lld), "
               "dense %lld (%.1f%% saved)\n",
               r.result.prefill_seconds, r.result.decode_seconds, r.TokensPerSecond(),
               static_cast<long long>(k_bytes + v_bytes), static_cast<long long>(k_bytes),
               static_cast<long long>(v_bytes), static_cast<long long>(r.kv.dense_per_token),
               100.0 * (1.0 - double(k_bytes + v_bytes) / r.kv.dense_per_token));
  if (ranks <= 1) return;
  std::fprintf(stderr, "placement: %s over %d ranks\n",
               identity_placement ? "contiguous head blocks" : "planned (--placement)", ranks);
  for (size_t i = 0; i < r.per_rank.size(); ++i) {
    std::fprintf(stderr, "rank %zu: %d representatives over all layers, K %lld bytes per token\n", i,
                 r.per_rank[i].representatives, static_cast<long long>(r.per_rank[i].k_bytes_per_token));
  }
}

Json PromptLogitsJson(const Tensor& logits) {
  Json rows = Json::MakeArray();
  for (int64_t r = 0; r < logits.dim(0); ++r) {
    Json row = Json::MakeArray();
    for (int64_t c = 0; c < logits.dim(1); ++c) {
      row.Push(Json(static_cast<double>(logits.data<float>()[r * logits.dim(1) + c])));
    }
    rows.Push(std::move(row));
  }
  return rows;
}

// --json: prompt_ids, output_ids, text (with a tokenizer), and what --dump-logits, --dump-clusters
// and --stats add.
Json ReportJson(const Report& r, const GenerateFlags& flags, const Tokenizer* tokenizer,
                const HeadPlacement& placement) {
  Json out = Json::MakeObject();
  out.Set("prompt_ids", JsonArray(r.prompt));
  out.Set("output_ids", JsonArray(r.result.output_ids[0]));
  if (tokenizer != nullptr) {
    out.Set("text", Json(tokenizer->Decode(r.result.output_ids[0], /*skip_special_tokens=*/true)));
  }
  if (flags.dump_logits) out.Set("prompt_logits", PromptLogitsJson(r.result.prompt_logits[0]));
  if (flags.dump_clusters) out.Set("clusters", JsonArray(r.clusters));
  if (!flags.stats) return out;
  const int64_t k_bytes = r.kv.k_per_token, v_bytes = r.kv.v_per_token;
  out.Set("dense_kv_bytes_per_token", Json(r.kv.dense_per_token));
  out.Set("placement", PlacementToJson(placement));
  Json ranks = Json::MakeArray();
  for (const RankKv& rank : r.per_rank) {
    Json entry = Json::MakeObject();
    entry.Set("representatives", Json(rank.representatives));
    entry.Set("k_bytes_per_token", Json(rank.k_bytes_per_token));
    ranks.Push(std::move(entry));
  }
  out.Set("ranks", std::move(ranks));
  out.Set("kv_bytes_per_token", Json(k_bytes + v_bytes));
  out.Set("k_bytes_per_token", Json(k_bytes));
  out.Set("v_bytes_per_token", Json(v_bytes));
  out.Set("prefill_seconds", Json(r.result.prefill_seconds));
  out.Set("decode_seconds", Json(r.result.decode_seconds));
  out.Set("decode_tokens_per_second", Json(r.TokensPerSecond()));
  return out;
}

}  // namespace

absl::Status RunGenerate(const std::vector<std::string>& args) {
  FlagParser parser;
  GenerateFlags flags;
  flags.Register(&parser);
  auto help = parser.ParseOrShowHelp(args, flags.help,
                                     "chai generate [--model DIR|FILE.json --random-weights] --prompt-ids IDS [flags]");
  if (!help.ok() || *help) return help.status();
  if (auto s = CheckOutputFolder(flags.json_path, "--json"); !s.ok()) return s;
  const bool has_text = parser.Seen("prompt"), has_ids = parser.Seen("prompt-ids");
  if (has_text == has_ids) {
    return absl::InvalidArgumentError("give exactly one of --prompt TEXT or --prompt-ids 1,2,3");
  }
  // A model path that does not exist, or has no config, is the error to report, not the tokenizer
  // it cannot have.
  if (!flags.model.model.empty()) {
    if (!std::filesystem::exists(flags.model.model)) {
      return absl::NotFoundError(absl::StrCat("--model: no such file or directory: ", flags.model.model));
    }
    if (auto config = LoadModelConfig(flags.model.model); !config.ok()) return config.status();
  }
  auto tokenizer = LoadTokenizerIfAny(flags.model.model);
  if (!tokenizer.ok()) return tokenizer.status();
  auto prompt = ReadPrompt(flags, has_text, tokenizer->get());
  if (!prompt.ok()) return prompt.status();
  const bool sampling = parser.Seen("temperature") || parser.Seen("top-k") || parser.Seen("top-p");
  if (sampling && flags.greedy) return absl::InvalidArgumentError("--greedy cannot be combined with sampling flags");

  const int64_t positions = static_cast<int64_t>(prompt->size()) + std::max(0, flags.max_new_tokens);
  // Up front, as a server would refuse it: not a partial output, then an error mid-generation.
  if (auto s = CheckPositions(flags.model, positions,
                              absl::StrCat("the prompt's ", prompt->size(), " tokens + --max-new-tokens ",
                                           flags.max_new_tokens));
      !s.ok()) {
    return s;
  }
  auto model = LoadModel(flags.model, 1, positions);
  if (!model.ok()) return model.status();
  const GenerateOptions options = MakeGenerateOptions(flags, sampling, *model);

  const bool rank0 = model->comm->rank() == 0;
  // Text streams as it is produced when there is a tokenizer; ids otherwise.
  std::unique_ptr<StreamDecoder> stream;
  if (*tokenizer != nullptr) stream = std::make_unique<StreamDecoder>(**tokenizer);
  auto result = Generate(*model->engine, {*prompt}, options, [&](int, int32_t token) {
    if (!rank0) return;
    if (stream != nullptr) {
      std::fputs(stream->Push(token).c_str(), stdout);
    } else {
      std::printf("%d ", token);
    }
    std::fflush(stdout);
  });
  if (!result.ok()) return result.status();
  // Collectives first (every rank), then rank 0 reports.
  const Sequence& seq = *result->sequences[0];
  const KvBytes kv = GlobalKvBytes(seq, model->config, *ParseDType(flags.model.dtype), model->comm.get());
  const std::vector<RankKv> per_rank = PerRankKv(seq, model->comm.get());
  std::vector<std::vector<int>> clusters;
  if (flags.dump_clusters) {
    clusters = GlobalRepresentatives(seq, model->engine->weights(), model->placement, model->comm.get());
  }
  if (!rank0) return absl::OkStatus();
  if (stream != nullptr) std::fputs(stream->Flush().c_str(), stdout);
  std::printf("\n");
  std::fflush(stdout);

  const Report report{*prompt, *result, kv, per_rank, clusters};
  if (flags.stats) PrintStats(report, model->comm->size(), model->placement.IsIdentity());
  if (flags.json_path.empty()) return absl::OkStatus();
  const Json out = ReportJson(report, flags, tokenizer->get(), model->placement);
  if (auto s = WriteJsonFile(flags.json_path, out); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat("--json: ", s.message()));
  }
  return absl::OkStatus();
}

}  // namespace chai
