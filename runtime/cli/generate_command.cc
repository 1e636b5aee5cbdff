// `chai generate`: run a prompt through the model and print (and optionally save) the result.
#include <cstdio>
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
#include <filesystem>

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

Json IdsJson(const std::vector<int32_t>& ids) {
  Json a = Json::MakeArray();
  for (int32_t id : ids) a.Push(Json(static_cast<int64_t>(id)));
  return a;
}

}  // namespace

absl::Status RunGenerate(const std::vector<std::string>& args) {
  FlagParser parser;
  GenerateFlags flags;
  flags.Register(&parser);
  if (auto s = parser.Parse(args); !s.ok()) return s;
  if (flags.help) {
    std::printf("usage: chai generate [--model DIR|FILE.json --random-weights] --prompt-ids IDS [flags]\n%s",
                parser.Usage().c_str());
    return absl::OkStatus();
  }
  if (auto s = CheckOutputFolder(flags.json_path, "--json"); !s.ok()) return s;
  const bool has_text = parser.Seen("prompt"), has_ids = parser.Seen("prompt-ids");
  if (has_text == has_ids) {
    return absl::InvalidArgumentError("give exactly one of --prompt TEXT or --prompt-ids 1,2,3");
  }
  // A model path that does not exist is the error to report, not the tokenizer it cannot have.
  if (!flags.model.model.empty() && !std::filesystem::exists(flags.model.model)) {
    return absl::NotFoundError(absl::StrCat("--model: no such file or directory: ", flags.model.model));
  }
  // A tokenizer comes with a checkpoint directory; a bare config (random weights) has none.
  std::unique_ptr<Tokenizer> tokenizer;
  if (!flags.model.model.empty() && std::filesystem::is_directory(flags.model.model) &&
      HasTokenizerFiles(flags.model.model)) {
    auto loaded = Tokenizer::FromDirectory(flags.model.model);
    if (!loaded.ok()) return loaded.status();
    tokenizer = std::move(*loaded);
  }
  absl::StatusOr<std::vector<int32_t>> prompt;
  if (has_text) {
    if (tokenizer == nullptr) {
      return absl::InvalidArgumentError("--prompt needs a tokenizer (tokenizer.json, vocab.json + merges.txt or "
                                        "tokenizer.model) in the --model directory; use --prompt-ids instead");
    }
    prompt = tokenizer->Encode(flags.prompt_text, /*add_special_tokens=*/true);
    if (prompt->empty()) return absl::InvalidArgumentError("--prompt encodes to no tokens");
  } else {
    prompt = ParseIds(flags.prompt_ids);
  }
  if (!prompt.ok()) return prompt.status();
  const bool sampling = parser.Seen("temperature") || parser.Seen("top-k") || parser.Seen("top-p");
  if (sampling && flags.greedy) return absl::InvalidArgumentError("--greedy cannot be combined with sampling flags");

  const int64_t positions = static_cast<int64_t>(prompt->size()) + std::max(0, flags.max_new_tokens);
  auto model = LoadModel(flags.model, 1, positions);
  if (!model.ok()) return model.status();
  // Up front, as a server would refuse it: not a partial output, then an error mid-generation.
  if (auto s = CheckPositions(*model, positions,
                              absl::StrCat("the prompt's ", prompt->size(), " tokens + --max-new-tokens ",
                                           flags.max_new_tokens));
      !s.ok()) {
    return s;
  }
  GenerateOptions options;
  options.max_new_tokens = flags.max_new_tokens;
  options.sampling.greedy = !sampling;
  options.sampling.temperature = flags.temperature;
  options.sampling.top_k = flags.top_k;
  options.sampling.top_p = flags.top_p;
  options.sampling.seed = static_cast<uint64_t>(flags.model.seed);
  options.eos_token_id = flags.ignore_eos ? -1 : model->config.eos_token_id;
  options.keep_prompt_logits = flags.dump_logits;
  options.chai = model->chai.get();

  const bool rank0 = model->comm->rank() == 0;
  // Text streams as it is produced when there is a tokenizer; ids otherwise.
  std::unique_ptr<StreamDecoder> stream;
  if (tokenizer != nullptr) stream = std::make_unique<StreamDecoder>(*tokenizer);
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

  const int64_t k_bytes = kv.k_per_token, v_bytes = kv.v_per_token;
  const double tokens_per_s = result->decode_steps > 0 ? result->decode_steps / result->decode_seconds : 0.0;
  if (flags.stats) {
    std::fprintf(stderr,
                 "prefill %.3f s, decode %.3f s (%.1f tokens/s); KV bytes per token %lld (K %lld, V %lld), "
                 "dense %lld (%.1f%% saved)\n",
                 result->prefill_seconds, result->decode_seconds, tokens_per_s,
                 static_cast<long long>(k_bytes + v_bytes), static_cast<long long>(k_bytes),
                 static_cast<long long>(v_bytes), static_cast<long long>(kv.dense_per_token),
                 100.0 * (1.0 - double(k_bytes + v_bytes) / kv.dense_per_token));
    if (model->comm->size() > 1) {
      std::fprintf(stderr, "placement: %s over %d ranks\n",
                   model->placement.IsIdentity() ? "contiguous head blocks" : "planned (--placement)",
                   model->comm->size());
      for (size_t r = 0; r < per_rank.size(); ++r) {
        std::fprintf(stderr, "rank %zu: %d representatives over all layers, K %lld bytes per token\n", r,
                     per_rank[r].representatives, static_cast<long long>(per_rank[r].k_bytes_per_token));
      }
    }
  }
  if (flags.json_path.empty()) return absl::OkStatus();
  Json out = Json::MakeObject();
  out.Set("prompt_ids", IdsJson(*prompt));
  out.Set("output_ids", IdsJson(result->output_ids[0]));
  if (tokenizer != nullptr) out.Set("text", Json(tokenizer->Decode(result->output_ids[0], /*skip_special_tokens=*/true)));
  if (flags.dump_logits) {
    Json rows = Json::MakeArray();
    const Tensor& logits = result->prompt_logits[0];
    for (int64_t r = 0; r < logits.dim(0); ++r) {
      Json row = Json::MakeArray();
      for (int64_t c = 0; c < logits.dim(1); ++c) row.Push(Json(static_cast<double>(logits.data<float>()[r * logits.dim(1) + c])));
      rows.Push(std::move(row));
    }
    out.Set("prompt_logits", std::move(rows));
  }
  if (flags.dump_clusters) {
    Json layers = Json::MakeArray();
    for (const auto& layer : clusters) {
      Json row = Json::MakeArray();
      for (int r : layer) row.Push(Json(r));
      layers.Push(std::move(row));
    }
    out.Set("clusters", std::move(layers));
  }
  if (flags.stats) {
    out.Set("dense_kv_bytes_per_token", Json(kv.dense_per_token));
    out.Set("placement", PlacementToJson(model->placement));
    Json ranks = Json::MakeArray();
    for (const RankKv& r : per_rank) {
      Json entry = Json::MakeObject();
      entry.Set("representatives", Json(r.representatives));
      entry.Set("k_bytes_per_token", Json(r.k_bytes_per_token));
      ranks.Push(std::move(entry));
    }
    out.Set("ranks", std::move(ranks));
    out.Set("kv_bytes_per_token", Json(k_bytes + v_bytes));
    out.Set("k_bytes_per_token", Json(k_bytes));
    out.Set("v_bytes_per_token", Json(v_bytes));
    out.Set("prefill_seconds", Json(result->prefill_seconds));
    out.Set("decode_seconds", Json(result->decode_seconds));
    out.Set("decode_tokens_per_second", Json(tokens_per_s));
  }
  if (auto s = WriteJsonFile(flags.json_path, out); !s.ok()) return absl::Status(s.code(), absl::StrCat("--json: ", s.message()));
  return absl::OkStatus();
}

}  // namespace chai
