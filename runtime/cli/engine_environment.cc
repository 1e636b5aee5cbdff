#include "runtime/cli/engine_environment.h"

#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace chai {
namespace {

// A 0|1 switch of the decode step from the environment: nullopt when unset (the EngineOptions
// default stands), an error for anything but 0 or 1. The switches (CHAI_DECODE_QKV_APPEND,
// CHAI_DECODE_PIPELINE, CHAI_ALLREDUCE_IN_GEMV) and their defaults: runtime/engine.h.
absl::StatusOr<std::optional<bool>> EnvSwitch(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr) return std::optional<bool>();
  const std::string v = value;
  if (v != "0" && v != "1") return absl::InvalidArgumentError(absl::StrCat(name, " must be 0 or 1, got '", v, "'"));
  return std::optional<bool>(v == "1");
}

// CHAI_L2_PREFETCH=<attention MB>,<norm MB>[,alt|rows] (EngineOptions::l2_prefetch): MB of the next
// GEMV's weights fetched into L2 by decode attention and by the add + norm kernels, and the form
// of a hint for a GEMV of one wave (L2HintForm).
absl::StatusOr<EngineOptions::L2PrefetchBudget> ParseL2Prefetch(const std::string& text) {
  const auto bad = [&] {
    return absl::InvalidArgumentError(
        absl::StrCat("CHAI_L2_PREFETCH must be <attention MB>,<norm MB>[,alt|rows] with MB from 0 to 1024, got '",
                     text, "'"));
  };
  const std::vector<std::string> parts = absl::StrSplit(text, ',');
  if (parts.size() != 2 && parts.size() != 3) return bad();
  if (parts.size() == 3 && parts[2] != "alt" && parts[2] != "rows") return bad();
  double mb[2];
  for (int i = 0; i < 2; ++i) {
    if (!absl::SimpleAtod(parts[i], &mb[i]) || !(mb[i] >= 0 && mb[i] <= 1024)) return bad();
  }
  EngineOptions::L2PrefetchBudget budget;
  budget.attention = static_cast<int64_t>(mb[0] * (1 << 20));
  budget.norm = static_cast<int64_t>(mb[1] * (1 << 20));
  if (parts.size() == 3) budget.one_wave = parts[2] == "alt" ? L2HintForm::kAlternate : L2HintForm::kRows;
  return budget;
}

}  // namespace

absl::StatusOr<EngineOptions> EngineOptionsFromEnvironment(Device device) {
  EngineOptions kv;
  kv.capture_decode = device == Device::kCuda && std::getenv("CHAI_NO_GRAPHS") == nullptr;
  // none | activation (the default; `silu`, its name while only LLaMA had it, still accepted) | all
  if (const char* f = std::getenv("CHAI_DECODE_FUSION")) {
    const std::string mode = f;
    if (mode != "none" && mode != "activation" && mode != "silu" && mode != "all") {
      return absl::InvalidArgumentError(
          absl::StrCat("CHAI_DECODE_FUSION must be none, activation (or silu) or all, got '", mode, "'"));
    }
    kv.linear_fusion = mode == "none"  ? LinearFusion::kNone
                       : mode == "all" ? LinearFusion::kAll
                                       : LinearFusion::kActivation;
  }
  if (auto on = EnvSwitch("CHAI_DECODE_QKV_APPEND"); !on.ok()) {
    return on.status();
  } else if (on->has_value()) {
    kv.qkv_append_in_gemv = **on;
  }
  if (auto on = EnvSwitch("CHAI_DECODE_PIPELINE"); !on.ok()) {
    return on.status();
  } else if (on->has_value()) {
    kv.pipeline_greedy = **on;
  }
  if (auto on = EnvSwitch("CHAI_ALLREDUCE_IN_GEMV"); !on.ok()) {
    return on.status();
  } else if (on->has_value()) {
    kv.allreduce_in_gemv = **on;
  }
  if (const char* l2 = std::getenv("CHAI_L2_PREFETCH")) {
    auto budget = ParseL2Prefetch(l2);
    if (!budget.ok()) return budget.status();
    kv.l2_prefetch = *budget;
  }
  return kv;
}

void ApplyTensorParallelDefaults(int world, EngineOptions* kv) {
  if (world > 1 && std::getenv("CHAI_L2_PREFETCH") == nullptr) {
    // At TP > 1 the fused all-reduce + norm's blocks without a row carry the norms' hint: 8 MB,
    // from 4 x H200 (opt-66b-tp4-h200.md, twentieth session; settings in turn on one host):
    // OPT-66B batch 1 0.4-1.0% shorter than without (two rounds), LLaMA-7B at TP = 4 1.0% (one
    // round); 24 MB gave OPT-66B less (0.1-0.4%). Attention's hint stays off, as at TP = 1.
    kv->l2_prefetch = EngineOptions::L2PrefetchBudget{0, int64_t{8} << 20, L2HintForm::kHeads};
  }
}

}  // namespace chai
