// Tuning variables that pick one of a few named values (env_choice.h).
#include "kernels/env_choice.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace chai {

int EnvChoice(const char* name, std::initializer_list<const char*> choices) {
  const char* env = std::getenv(name);
  if (env == nullptr || *env == '\0') return 0;
  int index = 0;
  std::string names;
  for (const char* c : choices) {
    if (std::strcmp(env, c) == 0) return index;
    names += (index == 0 ? "" : " or ") + std::string(c);
    ++index;
  }
  std::fprintf(stderr, "chai: warning: %s=%s is not %s; using %s\n", name, env, names.c_str(), *choices.begin());
  return 0;
}

}  // namespace chai
