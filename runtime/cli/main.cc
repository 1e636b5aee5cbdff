// `chai`: one executable with subcommands. Errors print one line and exit non-zero.
#include <cstdio>
#include <string>
#include <vector>

#include "parallel/bootstrap.h"
#include "runtime/cli/commands.h"

namespace {

constexpr char kUsage[] =
    "usage: chai <command> [flags]\n"
    "commands:\n"
    "  generate   run a prompt and print the generated tokens (chai generate --help)\n"
    "  bench      measure TTFT and TPOT against the memory-bandwidth floor (chai bench --help)\n"
    "  eval       perplexity over a text file, multiple-choice accuracy; dense vs CHAI (chai eval --help)\n"
    "  calibrate  choose a CHAI schedule from elbow curves and a perplexity budget (chai calibrate --help)\n"
    "Without --model, generate uses configs/models/opt-125m.json with random weights.\n";

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  // Under mpirun/srun this initialises MPI once for the whole process; alone it does nothing.
  auto group = chai::Bootstrap();
  if (!group.ok()) {
    std::fprintf(stderr, "chai: error: %s\n", std::string(group.status().message()).c_str());
    return 1;
  }
  const std::string command = argv[1];
  std::vector<std::string> args(argv + 2, argv + argc);
  absl::Status status;
  if (command == "generate") {
    status = chai::RunGenerate(args);
  } else if (command == "bench") {
    status = chai::RunBench(args);
  } else if (command == "eval") {
    status = chai::RunEval(args);
  } else if (command == "calibrate") {
    status = chai::RunCalibrate(args);
  } else {
    status = absl::InvalidArgumentError("unknown command '" + command + "' (see chai --help)");
  }
  if (!status.ok()) {
    if (group->world_size > 1) {
      std::fprintf(stderr, "chai: error: [rank %d] %s\n", group->world_rank, std::string(status.message()).c_str());
    } else {
      std::fprintf(stderr, "chai: error: %s\n", std::string(status.message()).c_str());
    }
  }
  chai::Finalize();
  return status.ok() ? 0 : 1;
}
