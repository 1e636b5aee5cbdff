// `chai calibrate`: choose a CHAI schedule for a model from calibration text (elbow curves and
// knees, optionally a perplexity-budgeted search verified on held-out text) and write it with
// the head affinities and elbow curves. See runtime/calibrate/calibrator.h for the method.
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "runtime/calibrate/calibration_io.h"
#include "runtime/calibrate/calibrator.h"
#include "runtime/cli/commands.h"
#include "runtime/cli/model_options.h"
#include "runtime/eval/text_data.h"

#ifndef CHAI_CONFIG_DIR
#define CHAI_CONFIG_DIR "configs"
#endif

namespace chai {
namespace {

struct CalibrateFlags {
  ModelOptions model;
  std::string data;
  int samples = 64;
  int window = 512;
  int search_windows = 16;
  int heldout_windows = 16;
  float ppl_budget = -1;
  float bound_q = -1;
  int batch = 1;
  int first_layer = 0;
  std::string out;
  std::string affinity;
  std::string elbow_csv;
  std::string plot;
  bool quiet = false;
  bool help = false;

  void Register(FlagParser* f) {
    model.Register(f);
    f->String("data", &data, "calibration text file (tokenized with the model's tokenizer)");
    f->Int("samples", &samples, "N: windows whose first 5 tokens give attention features (default 64)");
    f->Int("window", &window, "tokens per window (default 512)");
    f->Int("search-windows", &search_windows, "windows scored per candidate in the budget search (default 16)");
    f->Int("heldout-windows", &heldout_windows,
           "odd windows of the text, never calibrated on, that verify the result (default 16; 0: skip)");
    f->Float("ppl-budget", &ppl_budget, "X: search the schedule whose perplexity stays within X% of dense");
    f->Float("bound-q", &bound_q,
             "the search accepts a schedule when exp(mean + q*sd*sqrt(1/S+1/M)) of the per-window nll increase is "
             "within budget (default: one-sided 95% Student t; 0: the mean alone)");
    f->Int("batch", &batch, "windows per forward pass (default 1)");
    f->Int("first-layer", &first_layer, "layers below this one stay dense (the authors' prune_layer; default 0)");
    f->String("out", &out, "schedule JSON to write, e.g. configs/chai/NAME.json");
    f->String("affinity", &affinity, "head affinity JSON to write (default: OUT with .affinity.json)");
    f->String("elbow-csv", &elbow_csv, "elbow curves CSV to write (default: OUT with .elbow.csv)");
    f->String("plot", &plot, "also draw the elbow curves into this PNG (python3 + matplotlib)");
    f->Bool("quiet", &quiet, "no progress lines on stderr");
    f->Bool("help", &help, "show this help");
  }
};

std::string WithSuffix(const std::string& out, const std::string& suffix) {
  std::filesystem::path p(out);
  return (p.parent_path() / (p.stem().string() + suffix)).string();
}

std::string ShellQuote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

absl::Status Plot(const std::string& csv, const std::string& schedule, const std::string& png) {
  const std::string script = std::string(CHAI_CONFIG_DIR) + "/../benchmarks/scripts/plot_elbow.py";
  const std::string cmd = absl::StrCat("python3 ", ShellQuote(script), " --csv ", ShellQuote(csv), " --schedule ",
                                       ShellQuote(schedule), " --out ", ShellQuote(png));
  if (std::system(cmd.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("--plot: ", script,
                                            " failed (needs python3 with matplotlib: pip install "
                                            "matplotlib); the schedule, affinity and CSV were written"));
  }
  return absl::OkStatus();
}

void PrintSummary(const CalibrationResult& r, const CalibrateFlags& flags) {
  std::printf("%-6s %12s %6s %10s\n", "layer", "resistance", "knee", "clusters");
  for (size_t l = 0; l < r.schedule.size(); ++l) {
    std::printf("%-6zu %12.5f %6d %10d\n", l, r.resistance[l], r.knee[l], r.schedule[l]);
  }
  if (r.search) {
    std::printf(
        "search (%d windows, %lld tokens): dense %.4f, schedule %.4f (%+.2f%%, upper bound %+.2f%%, "
        "budget %g%%), %zu trials\n",
        flags.search_windows, static_cast<long long>(r.search_tokens), r.search->dense_perplexity, r.search->perplexity,
        100.0 * (r.search->perplexity / r.search->dense_perplexity - 1.0), 100.0 * (r.search->ratio_bound - 1.0),
        flags.ppl_budget, r.search->trials.size());
  }
  if (!r.heldout.empty()) {
    const double dense = r.heldout[0].perplexity;
    std::printf("held-out (%d windows, %lld tokens): dense %.4f", flags.heldout_windows,
                static_cast<long long>(r.heldout_tokens), dense);
    for (size_t i = 1; i < r.heldout.size(); ++i) {
      std::printf(", %s [%s] %.4f (%+.2f%%)", i == 1 ? "schedule" : "knees",
                  absl::StrJoin(r.heldout[i].schedule, ",").c_str(), r.heldout[i].perplexity,
                  100.0 * (r.heldout[i].perplexity / dense - 1.0));
    }
    if (r.search) {
      std::printf("; %s the budget",
                  r.heldout[1].perplexity <= dense * (1.0 + flags.ppl_budget / 100.0) ? "within" : "OVER");
    }
    std::printf("\n");
  }
}

// The flags that need no file: what to write, where, and the budget's sign.
absl::Status CheckCalibrateFlags(const CalibrateFlags& flags, const FlagParser& parser) {
  if (flags.out.empty()) return absl::InvalidArgumentError("give --out FILE.json for the schedule");
  if (flags.data.empty()) return absl::InvalidArgumentError("give --data FILE.txt (calibration text)");
  if (flags.model.chai != "off") return absl::InvalidArgumentError("chai calibrate makes a schedule; drop --chai");
  if (parser.Seen("ppl-budget") && flags.ppl_budget < 0) {
    return absl::InvalidArgumentError("--ppl-budget must be >= 0 (a percentage)");
  }
  for (const auto& [path, flag] : {std::pair{flags.out, "--out"}, std::pair{flags.affinity, "--affinity"},
                                   std::pair{flags.elbow_csv, "--elbow-csv"}, std::pair{flags.plot, "--plot"}}) {
    if (auto s = CheckOutputFolder(path, flag); !s.ok()) return s;
  }
  return absl::OkStatus();
}

// The calibrator's options from the flags, checked against the model's positions.
absl::StatusOr<CalibrateOptions> CalibrateOptionsFrom(const CalibrateFlags& flags, const FlagParser& parser,
                                                      int max_positions) {
  CalibrateOptions options;
  options.window = flags.window;
  options.samples = flags.samples;
  options.search_windows = flags.search_windows;
  options.heldout_windows = flags.heldout_windows;
  options.budget_percent = parser.Seen("ppl-budget") ? flags.ppl_budget : -1.0;
  options.batch = flags.batch;
  options.first_layer = flags.first_layer;
  if (parser.Seen("bound-q") && flags.bound_q < 0) return absl::InvalidArgumentError("--bound-q must be >= 0");
  options.bound_q = parser.Seen("bound-q") ? flags.bound_q : -1.0;
  auto method = ParseClusterMethod(flags.model.chai_cluster);
  if (!method.ok()) return method.status();
  auto rep = ParseRepMethod(flags.model.chai_rep);
  if (!rep.ok()) return rep.status();
  options.method = *method;
  options.rep = *rep;
  options.seed = static_cast<uint64_t>(flags.model.seed);
  options.elbow.seed = options.seed;
  if (!flags.quiet) options.log = [](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); };
  if (auto s = CheckCalibrateOptions(options, max_positions); !s.ok()) return s;
  return options;
}

// The schedule, the affinity and the elbow table (and the plot, if asked for), then the summary.
absl::Status WriteCalibration(const CalibrationResult& result, const CalibrateFlags& flags,
                              const CalibrateOptions& options) {
  const std::string affinity = flags.affinity.empty() ? WithSuffix(flags.out, ".affinity.json") : flags.affinity;
  const std::string csv = flags.elbow_csv.empty() ? WithSuffix(flags.out, ".elbow.csv") : flags.elbow_csv;
  CalibrationSource source{flags.data, ClusterMethodName(options.method), options};
  if (auto s = WriteJsonFile(ScheduleJson(result, source), flags.out, "--out"); !s.ok()) return s;
  if (auto s = WriteJsonFile(AffinityJson(result), affinity, "--affinity"); !s.ok()) return s;
  if (auto s = WriteTextFile(ElbowCsv(result), csv, "--elbow-csv"); !s.ok()) return s;
  PrintSummary(result, flags);
  std::printf("wrote %s, %s, %s\n", flags.out.c_str(), affinity.c_str(), csv.c_str());
  if (!flags.plot.empty()) {
    if (auto s = Plot(csv, flags.out, flags.plot); !s.ok()) return s;
    std::printf("wrote %s\n", flags.plot.c_str());
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status RunCalibrate(const std::vector<std::string>& args) {
  FlagParser parser;
  CalibrateFlags flags;
  flags.Register(&parser);
  auto help = parser.ParseOrShowHelp(args, flags.help,
                                     "chai calibrate --model DIR --data FILE.txt --samples N --out "
                                     "configs/chai/NAME.json [--ppl-budget X] [--plot PNG]");
  if (!help.ok() || *help) return help.status();
  if (auto s = CheckCalibrateFlags(flags, parser); !s.ok()) return s;
  auto text = ReadTextFile(flags.data, "--data");
  if (!text.ok()) return text.status();
  if (flags.model.model.empty()) {
    return absl::InvalidArgumentError("chai calibrate needs --model DIR (a checkpoint directory with a tokenizer)");
  }
  auto config = LoadModelConfig(flags.model.model);
  if (!config.ok()) return config.status();
  // --max-seq-len may raise a rotary model's limit (LoadModel checks it); the options are checked
  // against it here so that a bad one fails before the text is tokenized and the weights load.
  const int max_positions = flags.model.max_seq_len > 0 ? flags.model.max_seq_len : config->max_positions;
  auto options = CalibrateOptionsFrom(flags, parser, max_positions);
  if (!options.ok()) return options.status();

  auto tokenizer = LoadModelTokenizer(flags.model.model);
  if (!tokenizer.ok()) return tokenizer.status();
  const std::vector<int32_t> ids = TokenizeText(**tokenizer, *text);

  auto model = LoadModel(flags.model, flags.batch, flags.window);
  if (!model.ok()) return model.status();
  auto result = Calibrate(*model->engine, ids, *options);
  if (!result.ok()) return result.status();
  return WriteCalibration(*result, flags, *options);
}

}  // namespace chai
