// `chai eval`: perplexity over a text file (--data) and zero-shot multiple-choice accuracy
// (--task), dense, with CHAI (--chai), or both side by side (--compare).
#include <cstdio>
#include <fstream>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "runtime/cli/commands.h"
#include "runtime/cli/model_options.h"
#include "runtime/eval/choice_task.h"
#include "runtime/eval/multiple_choice.h"
#include "runtime/eval/perplexity.h"
#include "runtime/eval/progress.h"
#include "runtime/eval/text_data.h"
#include "runtime/json.h"

namespace chai {
namespace {

struct EvalFlags {
  ModelOptions model;
  std::string data;
  std::string task;
  int window = 512;
  int stride = 0;
  int max_windows = 0;
  std::string split = "all";
  int batch = 1;
  bool compare = false;
  bool quiet = false;
  std::string json_path;
  bool help = false;

  void Register(FlagParser* f) {
    model.Register(f);
    f->String("data", &data, "text file: perplexity over windows of its tokens");
    f->String("task", &task, "JSONL multiple-choice task: {\"context\", \"choices\", \"label\"} per line");
    f->Int("window", &window, "tokens per perplexity window (default 512; at most the model's positions)");
    f->Int("stride", &stride, "tokens between window starts (default: --window, no overlap); smaller overlaps");
    f->Int("max-windows", &max_windows,
           "score only N windows: the first N, or N spread evenly over a --split pool (default 0: all)");
    f->String("split", &split,
              "all (default), or the windows chai calibrate uses: calibration (even) or heldout (odd); "
              "non-overlapping");
    f->Int("batch", &batch, "windows per forward pass (default 1)");
    f->Bool("compare", &compare, "evaluate dense and CHAI side by side (needs --chai)");
    f->Bool("quiet", &quiet, "no progress lines on stderr");
    f->String("json", &json_path, "write the results to this JSON file");
    f->Bool("help", &help, "show this help");
  }
};

struct Mode {
  std::string name;        // "dense" or "chai"
  const ChaiPolicy* chai;  // null: dense
};

std::string Relative(double value, double base) { return absl::StrFormat("%+.2f%%", 100.0 * (value / base - 1.0)); }

absl::Status WriteJson(const Json& out, const std::string& path) {
  auto s = WriteJsonFile(path, out);
  return s.ok() ? s : absl::Status(s.code(), absl::StrCat("--json: ", s.message()));
}

// stride_given: --stride was on the command line (0 is its unset default, not a value to take).
absl::Status CheckFlags(const EvalFlags& flags, bool stride_given) {
  if (flags.data.empty() && flags.task.empty()) {
    return absl::InvalidArgumentError("give --data FILE.txt (perplexity) or --task FILE.jsonl (multiple choice)");
  }
  if (flags.compare && flags.model.chai == "off") {
    return absl::InvalidArgumentError("--compare needs a CHAI schedule: add --chai FILE|LIST");
  }
  if (flags.window < 2)
    return absl::InvalidArgumentError(absl::StrCat("--window must be >= 2 (got ", flags.window, ")"));
  if (flags.stride < 0 || flags.stride > flags.window || (stride_given && flags.stride == 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--stride must be between 1 and --window ", flags.window, " (got ", flags.stride, ")"));
  }
  if (flags.batch < 1) return absl::InvalidArgumentError("--batch must be >= 1");
  if (flags.split != "all" && flags.stride != 0 && flags.stride != flags.window) {
    return absl::InvalidArgumentError("--split " + flags.split + " takes non-overlapping windows: drop --stride");
  }
  if (flags.max_windows < 0) return absl::InvalidArgumentError("--max-windows must be >= 0");
  return absl::OkStatus();
}


// The perplexity windows over the text's `tokens` tokens: every window (--stride, --max-windows),
// or --split's pool (non-overlapping, spread evenly when --max-windows caps it).
absl::StatusOr<std::vector<TextWindow>> PlanTextWindows(const EvalFlags& flags, WindowSplit split, int stride,
                                                        int64_t tokens) {
  if (split == WindowSplit::kAll) return PlanWindows(tokens, flags.window, stride, flags.max_windows);
  const std::vector<int64_t> pool = SplitPool(tokens, flags.window, split);
  if (pool.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("--split ", flags.split, ": the text's ", tokens,
                                                   " tokens hold no such window of ", flags.window));
  }
  const int count = flags.max_windows > 0 ? std::min<int>(flags.max_windows, pool.size()) : pool.size();
  return WindowsAt(SpreadEvenly(pool, count), flags.window);
}

// What both evaluations share: the flags, the loaded model, the modes to run (dense, CHAI or
// both), the schedule as printed, and whether this rank prints.
struct EvalRun {
  const EvalFlags& flags;
  LoadedModel& model;
  const std::vector<Mode>& modes;
  const std::string& schedule;
  bool rank0;
};

// evaluate(mode, progress callback) in each of the run's modes, with a progress line per mode;
// the first error ends it.
template <typename Result, typename Evaluate>
absl::StatusOr<std::vector<Result>> InEachMode(const EvalRun& run, const std::string& what, const char* unit,
                                               Evaluate evaluate) {
  std::vector<Result> results;
  for (const Mode& mode : run.modes) {
    Progress progress(what + " " + mode.name, unit, run.rank0 && !run.flags.quiet);
    absl::StatusOr<Result> r = evaluate(mode, progress.Callback());
    if (!r.ok()) return r.status();
    results.push_back(std::move(*r));
  }
  return results;
}

// Perplexity over the windows in each mode: the table on stdout (rank 0) and its JSON.
absl::StatusOr<Json> RunPerplexity(const EvalRun& run, const std::vector<int32_t>& ids,
                                   const std::vector<TextWindow>& windows, int stride) {
  const EvalFlags& flags = run.flags;
  int64_t scored = 0;
  for (const TextWindow& w : windows) scored += w.scored();
  if (run.rank0 && !flags.quiet) {
    std::fprintf(stderr, "eval: %zu tokens, %zu windows of %d (stride %d), %lld scored\n", ids.size(), windows.size(),
                 flags.window, stride, static_cast<long long>(scored));
  }
  auto evaluated = InEachMode<PerplexityResult>(run, "perplexity", "windows", [&](const Mode& mode, auto progress) {
    PerplexityOptions options;
    options.batch = flags.batch;
    options.chai = mode.chai;
    options.progress = std::move(progress);
    return EvaluatePerplexity(*run.model.engine, ids, windows, options);
  });
  if (!evaluated.ok()) return evaluated.status();
  const std::vector<PerplexityResult>& results = *evaluated;
  Json ppl = Json::MakeObject();
  ppl.Set("data", Json(flags.data));
  ppl.Set("window", Json(flags.window));
  ppl.Set("stride", Json(stride));
  ppl.Set("split", Json(flags.split));
  ppl.Set("windows", Json(static_cast<int64_t>(windows.size())));
  ppl.Set("tokens", Json(scored));
  ppl.Set("text_tokens", Json(static_cast<int64_t>(ids.size())));
  if (run.rank0) {
    std::printf("%-6s %-28s %12s %10s %9s %8s %9s\n", "mode", "schedule", "perplexity", "nll/token", "tokens",
                "windows", "seconds");
  }
  for (size_t m = 0; m < run.modes.size(); ++m) {
    const PerplexityResult& r = results[m];
    if (run.rank0) {
      std::printf("%-6s %-28s %12.4f %10.5f %9lld %8d %9.1f", run.modes[m].name.c_str(),
                  run.modes[m].chai ? run.schedule.c_str() : "-", r.perplexity(), r.mean_nll(),
                  static_cast<long long>(r.tokens), r.windows(), r.seconds);
      if (m > 0) std::printf("  (%s vs dense)", Relative(r.perplexity(), results[0].perplexity()).c_str());
      std::printf("\n");
    }
    Json j = Json::MakeObject();
    j.Set("perplexity", Json(r.perplexity()));
    j.Set("nll_per_token", Json(r.mean_nll()));
    j.Set("nll_sum", Json(r.nll));
    j.Set("seconds", Json(r.seconds));
    j.Set("window_nll", JsonArray(r.window_nll));
    ppl.Set(run.modes[m].name, std::move(j));
  }
  return ppl;
}

// Multiple-choice accuracy in each mode: the table on stdout (rank 0) and its JSON.
absl::StatusOr<Json> RunMultipleChoice(const EvalRun& run, const std::vector<ChoiceItem>& items,
                                       const std::vector<std::vector<ChoiceRequest>>& requests) {
  const EvalFlags& flags = run.flags;
  auto evaluate = [&](const Mode& mode, auto progress) {
    MultipleChoiceOptions options;
    options.chai = mode.chai;
    options.progress = std::move(progress);
    return EvaluateMultipleChoice(*run.model.engine, items, requests, options);
  };
  auto evaluated = InEachMode<MultipleChoiceResult>(run, "multiple choice", "items", evaluate);
  if (!evaluated.ok()) return evaluated.status();
  const std::vector<MultipleChoiceResult>& results = *evaluated;
  Json mc = Json::MakeObject();
  mc.Set("task", Json(flags.task));
  mc.Set("items", Json(static_cast<int64_t>(items.size())));
  if (run.rank0) {
    std::printf("%-6s %-28s %8s %8s %9s %9s\n", "mode", "schedule", "items", "acc", "acc_norm", "seconds");
  }
  for (size_t m = 0; m < run.modes.size(); ++m) {
    const MultipleChoiceResult& r = results[m];
    if (run.rank0) {
      std::printf("%-6s %-28s %8d %8.4f %9.4f %9.1f\n", run.modes[m].name.c_str(),
                  run.modes[m].chai ? run.schedule.c_str() : "-", r.items(), r.acc(), r.acc_norm(), r.seconds);
    }
    Json j = Json::MakeObject();
    j.Set("acc", Json(r.acc()));
    j.Set("acc_norm", Json(r.acc_norm()));
    j.Set("seconds", Json(r.seconds));
    j.Set("loglik", JsonArray(r.loglik));
    mc.Set(run.modes[m].name, std::move(j));
  }
  return mc;
}

// What an eval reads before the model loads, so that a bad path, task or window fails first:
// the text's tokens and their windows, the multiple-choice requests, and the longest sequence and
// the most sequences at once the engine must hold.
struct EvalInputs {
  std::optional<std::string> text;
  std::vector<int32_t> ids;
  std::vector<TextWindow> windows;
  std::vector<ChoiceItem> items;
  std::vector<std::vector<ChoiceRequest>> requests;
  int64_t max_len = 1, sequences = 1;
};

absl::StatusOr<EvalInputs> ReadEvalInputs(const EvalFlags& flags, WindowSplit split, int stride) {
  EvalInputs in;
  if (!flags.data.empty()) {
    auto read = ReadTextFile(flags.data, "--data");
    if (!read.ok()) return read.status();
    in.text = std::move(*read);
  }
  if (!flags.task.empty()) {
    auto loaded = LoadChoiceTask(flags.task);
    if (!loaded.ok()) return loaded.status();
    in.items = std::move(*loaded);
  }
  if (flags.model.model.empty()) {
    return absl::InvalidArgumentError("chai eval needs --model DIR (a checkpoint directory with a tokenizer)");
  }
  auto config = LoadModelConfig(flags.model.model);
  if (!config.ok()) return config.status();
  // --max-seq-len may raise a rotary model's limit (LoadModel checks it); checked here too so
  // that a bad window fails before the text is tokenized and the weights load.
  const int max_positions = flags.model.max_seq_len > 0 ? flags.model.max_seq_len : config->max_positions;
  if (in.text && flags.window > max_positions) {
    return absl::InvalidArgumentError(
        absl::StrCat("--window ", flags.window, " exceeds the model's maximum of ", max_positions, " positions"));
  }
  auto tokenizer = LoadModelTokenizer(flags.model.model);
  if (!tokenizer.ok()) return tokenizer.status();

  if (in.text) {
    in.ids = TokenizeText(**tokenizer, *in.text);
    auto planned = PlanTextWindows(flags, split, stride, static_cast<int64_t>(in.ids.size()));
    if (!planned.ok()) return planned.status();
    in.windows = std::move(*planned);
  }
  in.max_len = in.text ? std::min<int64_t>(flags.window, static_cast<int64_t>(in.ids.size())) : 1;
  // A --batch beyond the windows there are would only size a cache no pass uses.
  in.sequences = in.text ? std::min<int64_t>(flags.batch, std::max<int64_t>(1, std::ssize(in.windows))) : flags.batch;
  if (!in.items.empty()) {
    auto encoded = EncodeChoiceTask(**tokenizer, in.items, flags.task);
    if (!encoded.ok()) return encoded.status();
    in.requests = std::move(*encoded);
    int64_t mc_len, mc_choices;
    ChoiceTaskExtent(in.requests, max_positions, &mc_len, &mc_choices);
    in.max_len = std::max(in.max_len, mc_len);
    in.sequences = std::max(in.sequences, mc_choices);
  }
  return in;
}

}  // namespace

absl::Status RunEval(const std::vector<std::string>& args) {
  FlagParser parser;
  EvalFlags flags;
  flags.Register(&parser);
  auto help = parser.ParseOrShowHelp(args, flags.help,
                                     "chai eval --model DIR (--data FILE.txt [--window N --stride S] | --task "
                                     "FILE.jsonl) [--chai FILE [--compare]] [--json FILE]");
  if (!help.ok() || *help) return help.status();
  if (auto s = CheckFlags(flags, parser.Seen("stride")); !s.ok()) return s;
  if (auto s = CheckOutputFolder(flags.json_path, "--json"); !s.ok()) return s;
  auto split = ParseWindowSplit(flags.split);
  if (!split.ok()) return split.status();
  const int stride = flags.stride == 0 ? flags.window : flags.stride;
  auto inputs = ReadEvalInputs(flags, *split, stride);
  if (!inputs.ok()) return inputs.status();
  const EvalInputs& in = *inputs;

  auto model = LoadModel(flags.model, in.sequences, in.max_len);
  if (!model.ok()) return model.status();
  const bool rank0 = model->comm->rank() == 0;
  std::vector<Mode> modes;
  if (model->chai == nullptr || flags.compare) modes.push_back({"dense", nullptr});
  if (model->chai != nullptr) modes.push_back({"chai", model->chai.get()});

  Json out = Json::MakeObject();
  out.Set("model", Json(flags.model.model));
  if (model->chai != nullptr) {
    out.Set("chai_schedule", JsonArray(model->chai_schedule.layer_clusters));
    out.Set("chai_note", Json(model->chai_schedule.note));
  }
  const std::string schedule =
      model->chai != nullptr ? absl::StrJoin(model->chai_schedule.layer_clusters, ",") : std::string("-");

  const EvalRun run{flags, *model, modes, schedule, rank0};
  if (in.text) {
    auto ppl = RunPerplexity(run, in.ids, in.windows, stride);
    if (!ppl.ok()) return ppl.status();
    out.Set("perplexity", std::move(*ppl));
  }
  if (!in.items.empty()) {
    auto mc = RunMultipleChoice(run, in.items, in.requests);
    if (!mc.ok()) return mc.status();
    out.Set("multiple_choice", std::move(*mc));
  }
  if (!rank0 || flags.json_path.empty()) return absl::OkStatus();
  return WriteJson(out, flags.json_path);
}

}  // namespace chai
