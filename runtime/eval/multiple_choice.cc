#include "runtime/eval/multiple_choice.h"

#include <algorithm>
#include <chrono>
#include <memory>

#include "absl/strings/str_cat.h"
#include "runtime/eval/log_likelihood.h"

namespace chai {
namespace {

int ArgMax(const std::vector<double>& v) {
  return static_cast<int>(std::max_element(v.begin(), v.end()) - v.begin());  // first of equal maxima
}

}  // namespace

void ChoiceTaskExtent(const std::vector<std::vector<ChoiceRequest>>& requests, int max_positions, int64_t* max_len,
                      int64_t* max_choices) {
  *max_len = 1;
  *max_choices = 1;
  for (const auto& item : requests) {
    *max_choices = std::max<int64_t>(*max_choices, static_cast<int64_t>(item.size()));
    for (const ChoiceRequest& r : item) {
      const int64_t n = static_cast<int64_t>(r.context.size() + r.continuation.size()) - 1;
      *max_len = std::max<int64_t>(*max_len, std::min<int64_t>(n, max_positions));
    }
  }
}

absl::StatusOr<MultipleChoiceResult> EvaluateMultipleChoice(Engine& engine, const std::vector<ChoiceItem>& items,
                                                            const std::vector<std::vector<ChoiceRequest>>& requests,
                                                            const MultipleChoiceOptions& options) {
  if (items.size() != requests.size()) return absl::InternalError("items and requests differ in number");
  const auto start = std::chrono::steady_clock::now();
  const int64_t vocab = engine.config().vocab_size;
  const int64_t max_positions = engine.config().max_positions;
  MultipleChoiceResult result;
  for (size_t i = 0; i < items.size(); ++i) {
    std::vector<std::unique_ptr<Sequence>> seqs;
    std::vector<StepInput> steps;
    std::vector<std::vector<int32_t>> targets;  // the continuation of each choice
    for (const ChoiceRequest& r : requests[i]) {
      const int64_t cont = static_cast<int64_t>(r.continuation.size());
      if (cont >= max_positions) {
        return absl::InvalidArgumentError(absl::StrCat("--task line ", items[i].line, ": a choice has ", cont,
                                                       " tokens; the model reads at most ", max_positions));
      }
      std::vector<int32_t> input = r.context;
      input.insert(input.end(), r.continuation.begin(), r.continuation.end() - 1);
      if (static_cast<int64_t>(input.size()) > max_positions) input.erase(input.begin(), input.end() - max_positions);
      auto seq = engine.NewSequence();
      if (!seq.ok()) return seq.status();
      seqs.push_back(std::move(*seq));
      if (options.chai != nullptr) options.chai->Enable(seqs.back().get());
      steps.push_back({seqs.back().get(), std::move(input)});
      targets.push_back(r.continuation);
    }
    auto logits = engine.Forward(absl::MakeSpan(steps), /*all_positions=*/true);
    if (!logits.ok()) return logits.status();
    std::vector<double> ll, norm;
    int64_t row = 0;
    for (size_t c = 0; c < steps.size(); ++c) {
      const int64_t n = static_cast<int64_t>(steps[c].tokens.size());
      const int64_t cont = static_cast<int64_t>(targets[c].size());
      // The last `cont` positions predict the continuation.
      const float* first = logits->data<float>() + (row + n - cont) * vocab;
      ll.push_back(SumLogProbs(first, vocab, targets[c].data(), cont));
      norm.push_back(ll.back() / static_cast<double>(CodePoints(items[i].choices[c])));
      row += n;
    }
    result.pred.push_back(ArgMax(ll));
    result.pred_norm.push_back(ArgMax(norm));
    result.correct += result.pred.back() == items[i].label;
    result.correct_norm += result.pred_norm.back() == items[i].label;
    result.loglik.push_back(std::move(ll));
    if (options.progress) options.progress(static_cast<int>(i + 1), static_cast<int>(items.size()));
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace chai
