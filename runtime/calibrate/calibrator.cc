#include "runtime/calibrate/calibrator.h"

#include <algorithm>
#include <memory>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "runtime/calibrate/affinity.h"
#include "runtime/calibrate/feature_collector.h"
#include "runtime/calibrate/knee.h"
#include "runtime/chai/chai_policy.h"
#include "runtime/chai/features.h"
#include "runtime/eval/perplexity.h"
#include "runtime/eval/text_data.h"

namespace chai {

absl::Status CheckCalibrateOptions(const CalibrateOptions& o, int max_positions) {
  if (o.window < kChaiFeatureTokens + 1) {
    return absl::InvalidArgumentError(absl::StrCat("--window must be > ", kChaiFeatureTokens, " (got ", o.window, ")"));
  }
  if (o.window > max_positions) {
    return absl::InvalidArgumentError(
        absl::StrCat("--window ", o.window, " exceeds the model's maximum of ", max_positions, " positions"));
  }
  if (o.samples < 1) return absl::InvalidArgumentError("--samples must be >= 1");
  if (o.search_windows < 1) return absl::InvalidArgumentError("--search-windows must be >= 1");
  if (o.heldout_windows < 0) return absl::InvalidArgumentError("--heldout-windows must be >= 0");
  if (o.batch < 1) return absl::InvalidArgumentError("--batch must be >= 1");
  return absl::OkStatus();
}

namespace {

absl::Status CheckFirstLayer(const CalibrateOptions& o, int layers) {
  if (o.first_layer < 0 || o.first_layer >= layers) {
    return absl::InvalidArgumentError(
        absl::StrCat("--first-layer must be in [0, ", layers - 1, "] (got ", o.first_layer, ")"));
  }
  return absl::OkStatus();
}

// Per-window scores of `schedule`, with a CHAI policy built as LoadModel builds it.
absl::StatusOr<WindowScores> ScoreSchedule(Engine& engine, absl::Span<const int32_t> ids,
                                           const std::vector<TextWindow>& windows, const std::vector<int>& schedule,
                                           const CalibrateOptions& options) {
  const int heads = engine.config().num_heads;
  const bool dense = std::all_of(schedule.begin(), schedule.end(), [&](int k) { return k >= heads; });
  std::unique_ptr<ChaiPolicy> policy;
  PerplexityOptions ppl;
  ppl.batch = options.batch;
  if (!dense) {
    ChaiOptions chai;
    chai.local_clusters = schedule;
    chai.method = options.method;
    chai.rep = options.rep;
    chai.seed = options.seed;
    std::vector<std::vector<int>> global_heads;
    for (const LayerWeights& layer : engine.weights().layers) global_heads.push_back(layer.heads);
    policy = std::make_unique<ChaiPolicy>(std::move(chai), std::move(global_heads), engine.weights().local_kv_heads,
                                          engine.config().head_dim);
    ppl.chai = policy.get();
  }
  engine.set_attention_policy(policy.get());
  auto r = EvaluatePerplexity(engine, ids, windows, ppl);
  engine.set_attention_policy(nullptr);
  if (!r.ok()) return r.status();
  WindowScores scores;
  scores.nll = r->window_nll;
  for (const TextWindow& w : windows) scores.tokens.push_back(w.scored());
  return scores;
}

void Log(const CalibrateOptions& o, const std::string& line) {
  if (o.log) o.log(line);
}

// The windows: even ones of `n` tokens calibrate (the samples' and the search's starts), odd ones
// are held out; a clear error when there are too few for what the options ask.
absl::Status PlanWindows(const CalibrateOptions& options, int64_t n, CalibrationResult* result) {
  const std::vector<int64_t> calibration_pool = SplitPool(n, options.window, WindowSplit::kCalibration);
  const std::vector<int64_t> heldout_pool = SplitPool(n, options.window, WindowSplit::kHeldOut);
  const int front = std::max(options.samples, options.search_windows);
  if (front > static_cast<int>(calibration_pool.size()) ||
      options.heldout_windows > static_cast<int>(heldout_pool.size())) {
    return absl::InvalidArgumentError(
        absl::StrCat("--data has ", n, " tokens, ", calibration_pool.size() + heldout_pool.size(), " windows of ",
                     options.window, " (even ones calibrate, odd ones are held out): too few for ", front,
                     " calibration and ", options.heldout_windows,
                     " held-out windows; lower --samples, --search-windows, --heldout-windows or --window"));
  }
  result->total_tokens = n;
  result->samples = options.samples;
  result->sample_starts = SpreadEvenly(calibration_pool, options.samples);
  result->search_starts = SpreadEvenly(calibration_pool, options.search_windows);
  result->heldout_starts = SpreadEvenly(heldout_pool, options.heldout_windows);
  return absl::OkStatus();
}

// Each layer's elbow curve, knee and clustering resistance from the samples' features, and the
// layers from first_layer on ordered most redundant first.
void RankLayers(const LayerSampleFeatures& features, const ModelConfig& c, const CalibrateOptions& options,
                CalibrationResult* result) {
  for (int l = 0; l < c.num_layers; ++l) {
    result->elbow.push_back(ElbowCurve(features[l], c.num_heads, kChaiFeatureSize, options.elbow));
    result->knee.push_back(KneeOfCurve(result->elbow.back()));
    result->resistance.push_back(ClusteringResistance(result->elbow.back(), options.samples, c.num_heads));
  }
  result->order.resize(c.num_layers - options.first_layer);
  std::iota(result->order.begin(), result->order.end(), options.first_layer);
  // Most redundant first; among equals the deeper layer (deep layers share most in the paper).
  const std::vector<double>& resistance = result->resistance;
  std::stable_sort(result->order.begin(), result->order.end(), [&](int a, int b) {
    return resistance[a] != resistance[b] ? resistance[a] < resistance[b] : a > b;
  });
  Log(options,
      absl::StrCat("calibrate: elbow curves from ", options.samples, " samples; knees ",
                   absl::StrJoin(result->knee, ","), "; most redundant first: ", absl::StrJoin(result->order, ",")));
}

// The schedule search within options.budget_percent over the search windows.
absl::Status SearchWithinBudget(Engine& engine, absl::Span<const int32_t> ids, const CalibrateOptions& options,
                                CalibrationResult* result) {
  const std::vector<TextWindow> search = WindowsAt(result->search_starts, options.window);
  for (const TextWindow& x : search) result->search_tokens += x.scored();
  ScheduleEvaluator evaluate = [&](const std::vector<int>& schedule) -> absl::StatusOr<WindowScores> {
    auto scores = ScoreSchedule(engine, ids, search, schedule, options);
    if (scores.ok()) {
      Log(options, absl::StrFormat("search: [%s] perplexity %.4f", absl::StrJoin(schedule, ","), scores->Perplexity()));
    }
    return scores;
  };
  SearchBound bound;
  bound.q = options.bound_q;
  bound.fresh_windows = options.heldout_windows;
  const ModelConfig& c = engine.config();
  auto searched = SearchSchedule(c.num_layers, c.num_heads, result->order, options.budget_percent, bound, evaluate);
  if (!searched.ok()) return searched.status();
  result->schedule = searched->schedule;
  result->search = std::move(*searched);
  return absl::OkStatus();
}

// Held-out perplexity of dense, the chosen schedule and (where it differs) the elbow proposal.
absl::Status ScoreHeldOut(Engine& engine, absl::Span<const int32_t> ids, const CalibrateOptions& options,
                          const std::vector<int>& knees, CalibrationResult* result) {
  const std::vector<TextWindow> heldout = WindowsAt(result->heldout_starts, options.window);
  for (const TextWindow& x : heldout) result->heldout_tokens += x.scored();
  const ModelConfig& c = engine.config();
  std::vector<std::vector<int>> schedules = {std::vector<int>(c.num_layers, c.num_heads), result->schedule};
  if (knees != result->schedule) schedules.push_back(knees);
  for (const std::vector<int>& s : schedules) {
    auto scores = ScoreSchedule(engine, ids, heldout, s, options);
    if (!scores.ok()) return scores.status();
    Log(options, absl::StrFormat("held-out: [%s] perplexity %.4f", absl::StrJoin(s, ","), scores->Perplexity()));
    result->heldout.push_back({s, scores->Perplexity()});
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<CalibrationResult> Calibrate(Engine& engine, absl::Span<const int32_t> ids,
                                            const CalibrateOptions& options) {
  const ModelConfig& c = engine.config();
  if (auto s = CheckCalibrateOptions(options, c.max_positions); !s.ok()) return s;
  if (auto s = CheckFirstLayer(options, c.num_layers); !s.ok()) return s;
  CalibrationResult result;
  if (auto s = PlanWindows(options, static_cast<int64_t>(ids.size()), &result); !s.ok()) return s;

  // Elbow curves from the features of the samples' first 5 tokens. As many samples per pass as
  // the KV cache holds windows' worth of blocks.
  const int64_t block = engine.kv_pool().block_size(), w = options.window;
  const int feature_batch = static_cast<int>(std::min<int64_t>(64, options.batch * ((w + block - 1) / block)));
  auto features = CollectFeatures(engine, ids, result.sample_starts, feature_batch);
  if (!features.ok()) return features.status();
  RankLayers(*features, c, options, &result);

  // The elbow proposal: each layer at its knee (layers below first_layer dense).
  std::vector<int> knees = result.knee;
  for (int l = 0; l < options.first_layer; ++l) knees[l] = c.num_heads;
  result.schedule = knees;
  if (options.budget_percent >= 0) {
    if (auto s = SearchWithinBudget(engine, ids, options, &result); !s.ok()) return s;
  }
  result.affinity = ComputeHeadAffinity(*features, result.schedule, c.num_heads, options.method, options.seed);
  if (options.heldout_windows > 0) {
    if (auto s = ScoreHeldOut(engine, ids, options, knees, &result); !s.ok()) return s;
  }
  return result;
}

}  // namespace chai
