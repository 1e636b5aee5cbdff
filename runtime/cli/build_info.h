// What was built: the source revision and the backends, for `chai --version` and the first line
// of benchmark output (results tables name the commit they were measured at).
#ifndef CHAI_RUNTIME_CLI_BUILD_INFO_H_
#define CHAI_RUNTIME_CLI_BUILD_INFO_H_

#include <string>

namespace chai {

// The source tree's commit at build time (12 hex digits, "-dirty" when tracked files differed), or
// "unknown" outside a git checkout.
const char* BuildRevision();

// One line: "chai REVISION, CUDA backend for sm_90" or "chai REVISION, CPU only".
std::string BuildDescription();

}  // namespace chai

#endif  // CHAI_RUNTIME_CLI_BUILD_INFO_H_
