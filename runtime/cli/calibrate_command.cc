// `chai calibrate` (being written).
#include "runtime/cli/commands.h"

namespace chai {

absl::Status RunCalibrate(const std::vector<std::string>&) { return absl::UnimplementedError("chai calibrate: not yet"); }

}  // namespace chai
