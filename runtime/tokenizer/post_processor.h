// Post-processors of tokenizer.json ("post_processor" key): add special tokens around the encoded
// ids when Encode is asked to (add_special_tokens).
//
// Supported: TemplateProcessing (single-sequence template), RobertaProcessing, BertProcessing,
// ByteLevel (changes offsets only, so nothing here) and Sequence of these.
#ifndef CHAI_RUNTIME_TOKENIZER_POST_PROCESSOR_H_
#define CHAI_RUNTIME_TOKENIZER_POST_PROCESSOR_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/json.h"

namespace chai {

class PostProcessor {
 public:
  virtual ~PostProcessor() = default;
  virtual void Process(std::vector<int32_t>* ids) const = 0;
};

// A fixed prefix and suffix around the sequence; enough for every single-sequence template.
class AffixPostProcessor : public PostProcessor {
 public:
  AffixPostProcessor(std::vector<int32_t> prefix, std::vector<int32_t> suffix)
      : prefix_(std::move(prefix)), suffix_(std::move(suffix)) {}
  void Process(std::vector<int32_t>* ids) const override;

 private:
  std::vector<int32_t> prefix_, suffix_;
};

// Builds the post-processor a tokenizer.json "post_processor" value describes; nullptr when it
// adds nothing.
absl::StatusOr<std::unique_ptr<PostProcessor>> ParsePostProcessor(const Json& json);

}  // namespace chai

#endif  // CHAI_RUNTIME_TOKENIZER_POST_PROCESSOR_H_
