#include "runtime/cli/build_info.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "chai_build_info.h"  // generated: CHAI_GIT_REVISION (cmake/build_info.cmake)

namespace chai {

const char* BuildRevision() { return CHAI_GIT_REVISION; }

std::string BuildDescription() {
  const std::string archs = CHAI_BUILD_CUDA_ARCHS;  // CMAKE_CUDA_ARCHITECTURES, e.g. "90"; empty: no CUDA
  if (archs.empty()) return absl::StrCat("chai ", BuildRevision(), ", CPU only");
  return absl::StrCat("chai ", BuildRevision(), ", CUDA backend for sm_", absl::StrReplaceAll(archs, {{";", ", sm_"}}));
}

}  // namespace chai
