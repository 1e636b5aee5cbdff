#include "runtime/cli/flags.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "absl/strings/str_cat.h"

namespace chai {
namespace {

absl::Status BadValue(const std::string& name, const std::string& value, const char* kind) {
  return absl::InvalidArgumentError(absl::StrCat("--", name, " expects ", kind, ", got '", value, "'"));
}

}  // namespace

void FlagParser::String(const std::string& name, std::string* out, const std::string& help) {
  flags_[name] = {true, [out](const std::string& v) { *out = v; return absl::OkStatus(); }, help};
}

void FlagParser::Int64(const std::string& name, int64_t* out, const std::string& help) {
  flags_[name] = {true,
                  [name, out](const std::string& v) {
                    char* end = nullptr;
                    errno = 0;
                    long long x = std::strtoll(v.c_str(), &end, 10);
                    if (v.empty() || *end != '\0' || errno == ERANGE) return BadValue(name, v, "an integer");
                    *out = x;
                    return absl::OkStatus();
                  },
                  help};
}

void FlagParser::Int(const std::string& name, int* out, const std::string& help) {
  flags_[name] = {true,
                  [name, out](const std::string& v) {
                    char* end = nullptr;
                    errno = 0;
                    long x = std::strtol(v.c_str(), &end, 10);
                    if (v.empty() || *end != '\0' || errno == ERANGE || x < INT32_MIN || x > INT32_MAX) {
                      return BadValue(name, v, "an integer");
                    }
                    *out = static_cast<int>(x);
                    return absl::OkStatus();
                  },
                  help};
}

void FlagParser::Float(const std::string& name, float* out, const std::string& help) {
  flags_[name] = {true,
                  [name, out](const std::string& v) {
                    char* end = nullptr;
                    float x = std::strtof(v.c_str(), &end);
                    if (v.empty() || *end != '\0' || !std::isfinite(x)) return BadValue(name, v, "a number");
                    *out = x;
                    return absl::OkStatus();
                  },
                  help};
}

void FlagParser::PositiveInt(const std::string& name, int* out, const std::string& help) {
  Int(name, out, help);
  RequirePositive(name, [out] { return *out > 0; });
}

void FlagParser::PositiveFloat(const std::string& name, float* out, const std::string& help) {
  Float(name, out, help);
  RequirePositive(name, [out] { return *out > 0; });
}

void FlagParser::RequirePositive(const std::string& name, std::function<bool()> positive) {
  Flag& flag = flags_[name];
  flag.set = [name, set = std::move(flag.set), positive = std::move(positive)](const std::string& v) {
    if (absl::Status s = set(v); !s.ok()) return s;
    if (!positive()) return absl::InvalidArgumentError(absl::StrCat("--", name, " must be positive, got '", v, "'"));
    return absl::OkStatus();
  };
}

void FlagParser::Bool(const std::string& name, bool* out, const std::string& help) {
  flags_[name] = {false, [out](const std::string&) { *out = true; return absl::OkStatus(); }, help};
}

absl::Status FlagParser::Parse(const std::vector<std::string>& args) {
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg.rfind("--", 0) != 0) {
      return absl::InvalidArgumentError(absl::StrCat("unexpected argument '", arg, "' (flags start with --)"));
    }
    std::string name = arg.substr(2), value;
    bool has_value = false;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    auto it = flags_.find(name);
    if (it == flags_.end()) return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name));
    if (it->second.takes_value && !has_value) {
      if (i + 1 >= args.size()) return absl::InvalidArgumentError(absl::StrCat("--", name, " needs a value"));
      value = args[++i];
    } else if (!it->second.takes_value && has_value) {
      return absl::InvalidArgumentError(absl::StrCat("--", name, " takes no value"));
    }
    if (auto s = it->second.set(value); !s.ok()) return s;
    seen_.insert(name);
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> FlagParser::ParseOrShowHelp(const std::vector<std::string>& args, const bool& help,
                                                 const std::string& usage) {
  if (absl::Status s = Parse(args); !s.ok()) return s;
  if (!help) return false;
  std::printf("usage: %s\n%s", usage.c_str(), Usage().c_str());
  return true;
}

std::string FlagParser::Usage() const {
  std::string out;
  for (const auto& [name, flag] : flags_) {
    std::string left = absl::StrCat("  --", name, flag.takes_value ? " VALUE" : "");
    if (left.size() < 28) left.resize(28, ' ');
    absl::StrAppend(&out, left, " ", flag.help, "\n");
  }
  return out;
}

absl::Status CheckOutputFolder(const std::string& path, const std::string& flag) {
  if (path.empty()) return absl::OkStatus();
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    return absl::InvalidArgumentError(absl::StrCat(flag, ": ", path, " is a directory, not a file"));
  }
  if (!parent.empty() && !std::filesystem::is_directory(parent, ec)) {
    return absl::NotFoundError(absl::StrCat(flag, ": no such directory: ", parent.string()));
  }
  return absl::OkStatus();
}

}  // namespace chai
