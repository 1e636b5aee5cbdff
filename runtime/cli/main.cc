// `chai`: one executable with subcommands. Errors print one line and exit non-zero.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "parallel/bootstrap.h"
#include "runtime/cli/build_info.h"
#include "runtime/cli/commands.h"

namespace {

constexpr char kUsage[] =
    "usage: chai <command> [flags]\n"
    "commands:\n"
    "  generate   run a prompt and print the generated tokens (chai generate --help)\n"
    "  bench      measure TTFT and TPOT against the memory-bandwidth floor (chai bench --help)\n"
    "  eval       perplexity over a text file, multiple-choice accuracy; dense vs CHAI (chai eval --help)\n"
    "  calibrate  choose a CHAI schedule from elbow curves and a perplexity budget (chai calibrate --help)\n"
    "Without --model, generate uses configs/models/opt-125m.json with random weights.\n"
    "chai help COMMAND is chai COMMAND --help; chai --version prints the build's source revision,\n"
    "backends and kernel knobs.\n";

}  // namespace

int main(int argc, char** argv) {
  const bool help = argc >= 2 && (std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h" ||
                                  std::string(argv[1]) == "help");
  if (argc < 2 || (help && argc == 2)) {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  if (std::string(argv[1]) == "--version") {
    std::printf("%s\n", chai::BuildDescription().c_str());
    return 0;
  }
  // Under mpirun/srun this initialises MPI once for the whole process; alone it does nothing.
  // CHAI_LOG_RANKS=1 prints one line per rank (host, local rank, Slurm ids) for job logs.
  chai::BootstrapOptions bootstrap;
  const char* log_ranks = std::getenv("CHAI_LOG_RANKS");
  bootstrap.log_rank = log_ranks != nullptr && std::string(log_ranks) == "1";
  auto group = chai::Bootstrap(bootstrap);
  if (!group.ok()) {
    std::fprintf(stderr, "chai: error: %s\n", std::string(group.status().message()).c_str());
    return 1;
  }
  // `chai help COMMAND` (git's spelling) is `chai COMMAND --help`.
  const std::string command = help ? argv[2] : argv[1];
  std::vector<std::string> args(argv + 2, argv + argc);
  if (help) args = {"--help"};
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
    // Most errors (bad flags, files, impossible splits) are the same on every rank: rank 0
    // reports them; other ranks report only errors that are theirs alone.
    static const char* kSameOnEveryRank[] = {"cannot split", "--", "no such file", "unknown"};
    bool shared = false;
    for (const char* needle : kSameOnEveryRank) shared |= status.message().find(needle) != absl::string_view::npos;
    if (group->world_size == 1) {
      std::fprintf(stderr, "chai: error: %s\n", std::string(status.message()).c_str());
    } else if (group->world_rank == 0 || !shared) {
      std::fprintf(stderr, "chai: error: [rank %d] %s\n", group->world_rank, std::string(status.message()).c_str());
    }
  }
  chai::Finalize();
  return status.ok() ? 0 : 1;
}
