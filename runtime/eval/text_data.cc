#include "runtime/eval/text_data.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace chai {

absl::StatusOr<std::string> ReadTextFile(const std::string& path, const std::string& flag) {
  namespace fs = std::filesystem;
  if (path.empty()) return absl::InvalidArgumentError(absl::StrCat(flag, " needs a file"));
  std::error_code ec;
  if (!fs::exists(path, ec)) return absl::NotFoundError(absl::StrCat(flag, ": no such file: ", path));
  if (fs::is_directory(path, ec)) return absl::InvalidArgumentError(absl::StrCat(flag, ": ", path, " is a directory"));
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::PermissionDeniedError(absl::StrCat(flag, ": cannot read ", path));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat(flag, ": failed reading ", path));
  std::string s = text.str();
  if (absl::StripAsciiWhitespace(s).empty()) {
    return absl::InvalidArgumentError(absl::StrCat(flag, ": ", path, " is empty"));
  }
  return s;
}

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadModelTokenizer(const std::string& model) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (model.empty() || !fs::is_directory(model, ec)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--model must be a checkpoint directory with a tokenizer (got '", model, "')"));
  }
  for (const char* name : {"tokenizer.json", "vocab.json", "tokenizer.model"}) {
    if (fs::exists(fs::path(model) / name, ec)) return Tokenizer::FromDirectory(model);
  }
  return absl::NotFoundError(
      absl::StrCat("--model ", model, ": no tokenizer (tokenizer.json, vocab.json + merges.txt or tokenizer.model)"));
}

std::vector<int32_t> TokenizeText(const Tokenizer& tokenizer, const std::string& text) {
  return tokenizer.Encode(text, /*add_special_tokens=*/true);
}

absl::StatusOr<std::vector<TextWindow>> PlanWindows(int64_t num_tokens, int window, int stride, int max_windows) {
  if (window < 2) return absl::InvalidArgumentError(absl::StrCat("--window must be >= 2 (got ", window, ")"));
  if (stride < 1 || stride > window) {
    return absl::InvalidArgumentError(
        absl::StrCat("--stride must be between 1 and --window ", window, " (got ", stride, ")"));
  }
  if (max_windows < 0) return absl::InvalidArgumentError("--max-windows must be >= 0");
  if (num_tokens < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("the text has ", num_tokens, " token(s); perplexity needs at least 2"));
  }
  std::vector<TextWindow> windows;
  int64_t prev_end = 0;
  for (int64_t begin = 0; begin < num_tokens; begin += stride) {
    TextWindow w;
    w.begin = begin;
    w.end = std::min<int64_t>(begin + window, num_tokens);
    // Tokens up to prev_end were scored already; the window's first token has no context.
    w.score_begin = std::max(prev_end, begin + 1);
    if (w.score_begin < w.end) windows.push_back(w);
    prev_end = w.end;
    if (w.end == num_tokens) break;
    if (max_windows > 0 && static_cast<int>(windows.size()) == max_windows) break;
  }
  return windows;
}

absl::StatusOr<WindowSplit> ParseWindowSplit(const std::string& name) {
  if (name == "all") return WindowSplit::kAll;
  if (name == "calibration") return WindowSplit::kCalibration;
  if (name == "heldout") return WindowSplit::kHeldOut;
  return absl::InvalidArgumentError(absl::StrCat("--split must be all, calibration or heldout (got '", name, "')"));
}

std::vector<int64_t> SplitPool(int64_t num_tokens, int window, WindowSplit split) {
  std::vector<int64_t> pool;
  for (int64_t i = 0; (i + 1) * window <= num_tokens; ++i) {
    if (split == WindowSplit::kAll || (i % 2 == 0) == (split == WindowSplit::kCalibration)) pool.push_back(i * window);
  }
  return pool;
}

std::vector<int64_t> SpreadEvenly(const std::vector<int64_t>& pool, int count) {
  std::vector<int64_t> out;
  for (int j = 0; j < count; ++j) out.push_back(pool[static_cast<size_t>(j) * pool.size() / count]);
  return out;
}

std::vector<TextWindow> WindowsAt(const std::vector<int64_t>& starts, int window) {
  std::vector<TextWindow> out;
  for (int64_t s : starts) out.push_back({s, s + window, s + 1});
  return out;
}

}  // namespace chai
