#include "runtime/tokenizer/post_processor.h"

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"

namespace chai {

void AffixPostProcessor::Process(std::vector<int32_t>* ids) const {
  if (!prefix_.empty()) ids->insert(ids->begin(), prefix_.begin(), prefix_.end());
  ids->insert(ids->end(), suffix_.begin(), suffix_.end());
}

namespace {

class SequencePostProcessor : public PostProcessor {
 public:
  explicit SequencePostProcessor(std::vector<std::unique_ptr<PostProcessor>> steps) : steps_(std::move(steps)) {}
  void Process(std::vector<int32_t>* ids) const override {
    for (const auto& s : steps_) s->Process(ids);
  }

 private:
  std::vector<std::unique_ptr<PostProcessor>> steps_;
};

// The ids of a special token named in TemplateProcessing's "special_tokens" map.
absl::StatusOr<std::vector<int32_t>> TemplateSpecialIds(const Json& special_tokens, const std::string& name) {
  const Json* entry = special_tokens.Find(name);
  const Json* ids = entry ? entry->Find("ids") : nullptr;
  if (ids == nullptr || !ids->is_array()) {
    return absl::InvalidArgumentError(
        absl::StrCat("TemplateProcessing: special token \"", name, "\" is not in special_tokens"));
  }
  std::vector<int32_t> out;
  for (const Json& id : ids->as_array()) {
    auto v = id.AsInt();
    if (!v.ok() || *v < 0) return absl::InvalidArgumentError(absl::StrCat("TemplateProcessing: bad id for \"", name, "\""));
    out.push_back(static_cast<int32_t>(*v));
  }
  return out;
}

absl::StatusOr<std::unique_ptr<PostProcessor>> ParseTemplate(const Json& json) {
  const Json* single = json.Find("single");
  const Json* special_tokens = json.Find("special_tokens");
  if (single == nullptr || !single->is_array()) {
    return absl::InvalidArgumentError("TemplateProcessing needs a \"single\" array");
  }
  std::vector<int32_t> prefix, suffix;
  bool seen_sequence = false;
  for (const Json& item : single->as_array()) {
    if (const Json* seq = item.Find("Sequence")) {
      if (GetStringOr(*seq, "id", "") != "A" || seen_sequence) {
        return absl::InvalidArgumentError("TemplateProcessing: \"single\" must hold sequence A once");
      }
      seen_sequence = true;
      continue;
    }
    const Json* special = item.Find("SpecialToken");
    if (special == nullptr || special_tokens == nullptr) {
      return absl::InvalidArgumentError("TemplateProcessing: bad item in \"single\"");
    }
    auto ids = TemplateSpecialIds(*special_tokens, GetStringOr(*special, "id", ""));
    if (!ids.ok()) return ids.status();
    auto& dest = seen_sequence ? suffix : prefix;
    dest.insert(dest.end(), ids->begin(), ids->end());
  }
  if (!seen_sequence) return absl::InvalidArgumentError("TemplateProcessing: \"single\" has no sequence A");
  return std::unique_ptr<PostProcessor>(new AffixPostProcessor(std::move(prefix), std::move(suffix)));
}

// RobertaProcessing / BertProcessing: {"cls": [token, id], "sep": [token, id]}.
absl::StatusOr<std::unique_ptr<PostProcessor>> ParseClsSep(const Json& json, const std::string& type) {
  int32_t ids[2];
  const char* keys[2] = {"cls", "sep"};
  for (int i = 0; i < 2; ++i) {
    const Json* pair = json.Find(keys[i]);
    if (pair == nullptr || !pair->is_array() || pair->as_array().size() != 2) {
      return absl::InvalidArgumentError(absl::StrCat(type, " needs \"", keys[i], "\": [token, id]"));
    }
    auto id = pair->as_array()[1].AsInt();
    if (!id.ok() || *id < 0) return absl::InvalidArgumentError(absl::StrCat(type, ": bad \"", keys[i], "\" id"));
    ids[i] = static_cast<int32_t>(*id);
  }
  return std::unique_ptr<PostProcessor>(new AffixPostProcessor({ids[0]}, {ids[1]}));
}

}  // namespace

absl::StatusOr<std::unique_ptr<PostProcessor>> ParsePostProcessor(const Json& json) {
  if (json.is_null()) return std::unique_ptr<PostProcessor>();
  if (!json.is_object()) return absl::InvalidArgumentError("post_processor is not an object");
  const std::string type = GetStringOr(json, "type", "");
  if (type == "TemplateProcessing") return ParseTemplate(json);
  if (type == "RobertaProcessing" || type == "BertProcessing") return ParseClsSep(json, type);
  if (type == "ByteLevel") return std::unique_ptr<PostProcessor>();
  if (type == "Sequence") {
    const Json* list = json.Find("processors");
    if (list == nullptr || !list->is_array()) {
      return absl::InvalidArgumentError("Sequence post_processor needs a \"processors\" array");
    }
    std::vector<std::unique_ptr<PostProcessor>> steps;
    for (const Json& item : list->as_array()) {
      auto step = ParsePostProcessor(item);
      if (!step.ok()) return step.status();
      if (*step) steps.push_back(std::move(*step));
    }
    return std::unique_ptr<PostProcessor>(new SequencePostProcessor(std::move(steps)));
  }
  if (type.empty()) return absl::InvalidArgumentError("post_processor has no \"type\"");
  return absl::UnimplementedError(absl::StrCat("post_processor type \"", type, "\" is not supported"));
}

}  // namespace chai
