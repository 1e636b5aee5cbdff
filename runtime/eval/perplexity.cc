#include "runtime/eval/perplexity.h"

#include <algorithm>
#include <chrono>
#include <memory>

#include "absl/strings/str_cat.h"
#include "runtime/eval/log_likelihood.h"

namespace chai {

absl::StatusOr<PerplexityResult> EvaluatePerplexity(Engine& engine, absl::Span<const int32_t> ids,
                                                    absl::Span<const TextWindow> windows,
                                                    const PerplexityOptions& options) {
  if (options.batch < 1) return absl::InvalidArgumentError("--batch must be >= 1");
  for (const TextWindow& w : windows) {
    if (w.begin < 0 || w.end > static_cast<int64_t>(ids.size()) || w.score_begin <= w.begin || w.scored() < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("window [", w.begin, ", ", w.end, ") does not fit the ", ids.size(), " tokens of the text"));
    }
  }
  const auto start = std::chrono::steady_clock::now();
  const int64_t vocab = engine.config().vocab_size;
  const int total = static_cast<int>(windows.size());
  PerplexityResult result;
  for (int first = 0; first < total; first += options.batch) {
    const int last = std::min(total, first + options.batch);
    std::vector<std::unique_ptr<Sequence>> seqs;
    std::vector<StepInput> steps;
    for (int i = first; i < last; ++i) {
      auto seq = engine.NewSequence();
      if (!seq.ok()) return seq.status();
      seqs.push_back(std::move(*seq));
      if (options.chai != nullptr) options.chai->Enable(seqs.back().get());
      const TextWindow& w = windows[i];
      steps.push_back({seqs.back().get(), std::vector<int32_t>(ids.begin() + w.begin, ids.begin() + w.end)});
    }
    auto logits = engine.Forward(absl::MakeSpan(steps), /*all_positions=*/true);
    if (!logits.ok()) return logits.status();
    int64_t row = 0;  // first logits row of window i
    for (int i = first; i < last; ++i) {
      const TextWindow& w = windows[i];
      // The logits at position p predict token p + 1.
      const int64_t first_row = row + (w.score_begin - 1 - w.begin);
      const double ll =
          SumLogProbs(logits->data<float>() + first_row * vocab, vocab, ids.data() + w.score_begin, w.scored());
      result.window_nll.push_back(-ll);
      result.nll += -ll;
      result.tokens += w.scored();
      row += w.length();
    }
    if (options.progress) options.progress(last, total);
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace chai
