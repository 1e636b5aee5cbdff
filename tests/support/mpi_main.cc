#include "tests/support/mpi_main.h"

#include <mpi.h>

#include "gtest/gtest.h"

namespace chai::testing {

int RunMpiTests(int argc, char** argv, const std::function<int(int rank)>& after) {
  MPI_Init(&argc, &argv);
  ::testing::InitGoogleTest(&argc, argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank != 0) {
    delete ::testing::UnitTest::GetInstance()->listeners().Release(
        ::testing::UnitTest::GetInstance()->listeners().default_result_printer());
  }
  int rc = RUN_ALL_TESTS();
  if (after && rc == 0) rc = after(rank);
  // A failure on any rank fails the run, whichever rank's exit code mpirun reports.
  int worst = rc;
  MPI_Allreduce(&rc, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  MPI_Finalize();
  return worst;
}

}  // namespace chai::testing
