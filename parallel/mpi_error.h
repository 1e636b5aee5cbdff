// An MPI return code as an absl::Status, for the parallel/ code that calls MPI directly (bootstrap,
// the MPI communicator): "<what> failed: <MPI's own message> (MPI error <rc>)".
#ifndef CHAI_PARALLEL_MPI_ERROR_H_
#define CHAI_PARALLEL_MPI_ERROR_H_

#include "absl/status/status.h"

namespace chai {

// rc: a code other than MPI_SUCCESS that an MPI call returned (MPI must be initialised); what: the
// call, e.g. "MPI_Bcast".
absl::Status MpiError(int rc, const char* what);

}  // namespace chai

#endif  // CHAI_PARALLEL_MPI_ERROR_H_
