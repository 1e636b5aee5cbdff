// The main() of the MPI test binaries: MPI around GoogleTest, results printed by rank 0 only
// (every rank's failures still set its exit code, which mpirun reports).
#ifndef CHAI_TESTS_SUPPORT_MPI_MAIN_H_
#define CHAI_TESTS_SUPPORT_MPI_MAIN_H_

#include <functional>

namespace chai::testing {

// `after(rank)` runs after the tests, before MPI_Finalize, and may turn a pass into a failure
// (non-zero return).
int RunMpiTests(int argc, char** argv, const std::function<int(int rank)>& after = nullptr);

}  // namespace chai::testing

#endif  // CHAI_TESTS_SUPPORT_MPI_MAIN_H_
