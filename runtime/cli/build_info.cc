#include "runtime/cli/build_info.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "chai_build_info.h"  // generated: CHAI_GIT_REVISION (cmake/build_info.cmake)

namespace chai {

const char* BuildRevision() { return CHAI_GIT_REVISION; }

std::string DescribeBuild(absl::string_view revision, absl::string_view cuda_archs, absl::string_view cuda_knobs) {
  if (cuda_archs.empty()) return absl::StrCat("chai ", revision, ", CPU only");
  std::string line =
      absl::StrCat("chai ", revision, ", CUDA backend for sm_", absl::StrReplaceAll(cuda_archs, {{";", ", sm_"}}));
  if (!cuda_knobs.empty()) absl::StrAppend(&line, ", built with ", cuda_knobs);
  return line;
}

std::string BuildDescription() {
  // CMAKE_CUDA_ARCHITECTURES and CMAKE_CUDA_FLAGS' -DCHAI_* knobs (runtime/CMakeLists.txt).
  return DescribeBuild(BuildRevision(), CHAI_BUILD_CUDA_ARCHS, CHAI_BUILD_CUDA_KNOBS);
}

}  // namespace chai
