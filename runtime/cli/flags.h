// A small command-line flag parser: `--name value`, `--name=value` and boolean `--name`.
// Unknown flags, missing values and malformed numbers are errors naming the flag.
#ifndef CHAI_RUNTIME_CLI_FLAGS_H_
#define CHAI_RUNTIME_CLI_FLAGS_H_

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace chai {

class FlagParser {
 public:
  void String(const std::string& name, std::string* out, const std::string& help);
  void Int(const std::string& name, int* out, const std::string& help);
  void Int64(const std::string& name, int64_t* out, const std::string& help);
  void Float(const std::string& name, float* out, const std::string& help);
  void Bool(const std::string& name, bool* out, const std::string& help);
  // Int / Float for a setting whose unset value (0) means "chosen for you": a value given on the
  // command line must be positive (an explicit 0 is not taken for "unset").
  void PositiveInt(const std::string& name, int* out, const std::string& help);
  void PositiveFloat(const std::string& name, float* out, const std::string& help);

  absl::Status Parse(const std::vector<std::string>& args);
  // Parse; then, when `help` (the command's --help flag) was set by it, prints "usage: " + usage
  // and the flags on stdout and returns true: the command returns without running.
  absl::StatusOr<bool> ParseOrShowHelp(const std::vector<std::string>& args, const bool& help,
                                       const std::string& usage);
  bool Seen(const std::string& name) const { return seen_.count(name) > 0; }
  std::string Usage() const;

 private:
  struct Flag {
    bool takes_value;
    std::function<absl::Status(const std::string&)> set;
    std::string help;
  };
  void RequirePositive(const std::string& name, std::function<bool()> positive);

  std::map<std::string, Flag> flags_;
  std::set<std::string> seen_;
};

// An output file's flag checked before the work that produces it (minutes of benchmarking,
// hours of calibration): its folder must exist and it must not be a folder itself. Empty paths (not
// asked for) pass.
absl::Status CheckOutputFolder(const std::string& path, const std::string& flag);

}  // namespace chai

#endif  // CHAI_RUNTIME_CLI_FLAGS_H_
