// What was built: the source revision and the backends, for `chai --version` and the first line
// of benchmark output (results tables name the commit they were measured at).
#ifndef CHAI_RUNTIME_CLI_BUILD_INFO_H_
#define CHAI_RUNTIME_CLI_BUILD_INFO_H_

#include <string>

#include "absl/strings/string_view.h"

namespace chai {

// The source tree's commit at build time (12 hex digits, "-dirty" when tracked files differed), or
// "unknown" outside a git checkout.
const char* BuildRevision();

// One line: "chai REVISION, CUDA backend for sm_90" or "chai REVISION, CPU only"; a build whose
// CMAKE_CUDA_FLAGS set kernel knobs adds them: "..., sm_90, built with -DCHAI_GEMV_L2_HINT=256".
std::string BuildDescription();

// That line from its parts: cuda_archs as CMAKE_CUDA_ARCHITECTURES ("90" or "90;100"; empty: no
// CUDA backend), cuda_knobs the -DCHAI_* definitions separated by spaces (empty: none).
std::string DescribeBuild(absl::string_view revision, absl::string_view cuda_archs, absl::string_view cuda_knobs);

}  // namespace chai

#endif  // CHAI_RUNTIME_CLI_BUILD_INFO_H_
