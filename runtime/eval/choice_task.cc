#include "runtime/eval/choice_task.h"

#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "runtime/eval/text_data.h"
#include "runtime/json.h"

namespace chai {
namespace {

absl::Status LineError(const std::string& path, int line, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("--task ", path, ":", line, ": ", what));
}

absl::StatusOr<ChoiceItem> ParseItem(const std::string& text, const std::string& path, int line) {
  auto json = Json::Parse(text);
  if (!json.ok()) return LineError(path, line, absl::StrCat("not valid JSON (", json.status().message(), ")"));
  if (!json->is_object()) return LineError(path, line, "expected a JSON object {\"context\", \"choices\", \"label\"}");
  ChoiceItem item;
  item.line = line;
  const Json* context = json->Find("context");
  if (context == nullptr || !context->is_string()) return LineError(path, line, "\"context\" must be a string");
  item.context = context->as_string();
  const Json* choices = json->Find("choices");
  if (choices == nullptr || !choices->is_array()) return LineError(path, line, "\"choices\" must be a list of strings");
  for (const Json& c : choices->as_array()) {
    if (!c.is_string()) return LineError(path, line, "\"choices\" must be a list of strings");
    if (c.as_string().empty()) return LineError(path, line, "a choice is empty");
    item.choices.push_back(c.as_string());
  }
  if (item.choices.size() < 2) return LineError(path, line, "give at least 2 choices");
  const Json* label = json->Find("label");
  if (label == nullptr) return LineError(path, line, "\"label\" is missing");
  auto value = label->AsInt();
  if (!value.ok()) return LineError(path, line, "\"label\" must be an integer");
  if (*value < 0 || *value >= static_cast<int64_t>(item.choices.size())) {
    return LineError(path, line,
                     absl::StrCat("\"label\" ", *value, " is out of range for ", item.choices.size(), " choices"));
  }
  item.label = static_cast<int>(*value);
  return item;
}

}  // namespace

absl::StatusOr<std::vector<ChoiceItem>> LoadChoiceTask(const std::string& path) {
  auto text = ReadTextFile(path, "--task");
  if (!text.ok()) return text.status();
  std::vector<ChoiceItem> items;
  std::istringstream lines(*text);
  std::string line;
  for (int number = 1; std::getline(lines, line); ++number) {
    if (absl::StripAsciiWhitespace(line).empty()) continue;
    auto item = ParseItem(line, path, number);
    if (!item.ok()) return item.status();
    items.push_back(std::move(*item));
  }
  return items;
}

ChoiceRequest EncodeChoice(const Tokenizer& tokenizer, const std::string& context, const std::string& choice) {
  std::string ctx = context, cont = choice;
  size_t keep = ctx.size();
  while (keep > 0 && absl::ascii_isspace(static_cast<unsigned char>(ctx[keep - 1]))) --keep;
  cont = ctx.substr(keep) + cont;
  ctx.resize(keep);
  ChoiceRequest r;
  std::vector<int32_t> whole = tokenizer.Encode(ctx + cont, /*add_special_tokens=*/true);
  r.context = tokenizer.Encode(ctx, /*add_special_tokens=*/true);
  if (r.context.size() <= whole.size()) r.continuation.assign(whole.begin() + r.context.size(), whole.end());
  return r;
}

absl::StatusOr<std::vector<std::vector<ChoiceRequest>>> EncodeChoiceTask(const Tokenizer& tokenizer,
                                                                         const std::vector<ChoiceItem>& items,
                                                                         const std::string& path) {
  std::vector<std::vector<ChoiceRequest>> out;
  for (const ChoiceItem& item : items) {
    out.emplace_back();
    for (size_t c = 0; c < item.choices.size(); ++c) {
      ChoiceRequest r = EncodeChoice(tokenizer, item.context, item.choices[c]);
      if (r.context.empty()) {
        return LineError(path, item.line, "the context encodes to no tokens (this tokenizer adds no BOS)");
      }
      if (r.continuation.empty()) {
        return LineError(path, item.line, absl::StrCat("choice ", c, " adds no tokens after the context"));
      }
      out.back().push_back(std::move(r));
    }
  }
  return out;
}

int64_t CodePoints(const std::string& utf8) {
  int64_t n = 0;
  for (unsigned char c : utf8) n += (c & 0xC0) != 0x80;
  return n;
}

}  // namespace chai
