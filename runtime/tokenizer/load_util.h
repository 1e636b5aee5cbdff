// Small helpers shared by the tokenizer loaders.
#ifndef CHAI_RUNTIME_TOKENIZER_LOAD_UTIL_H_
#define CHAI_RUNTIME_TOKENIZER_LOAD_UTIL_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace chai {

// "path: problem" as one line (line breaks and other control characters in the problem are
// escaped), keeping the status code. A message that already starts with path is kept as is.
absl::Status FileError(const std::string& path, const absl::Status& status);
absl::Status FileError(const std::string& path, absl::StatusCode code, absl::string_view problem);

bool FileExists(const std::string& path);
bool IsDirectory(const std::string& path);
absl::StatusOr<std::string> ReadFileToString(const std::string& path);
std::string JoinPath(const std::string& dir, const std::string& name);

}  // namespace chai

#endif  // CHAI_RUNTIME_TOKENIZER_LOAD_UTIL_H_
