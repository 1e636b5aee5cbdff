#include "parallel/mpi_error.h"

#include <mpi.h>

#include <string>

#include "absl/strings/str_cat.h"

namespace chai {

absl::Status MpiError(int rc, const char* what) {
  char message[MPI_MAX_ERROR_STRING];
  int length = 0;
  // Callers pass codes MPI itself returned; should describing one fail (under an error handler that
  // returns), the status keeps the call and the code without MPI's words.
  if (MPI_Error_string(rc, message, &length) != MPI_SUCCESS) length = 0;
  return absl::InternalError(
      absl::StrCat(what, " failed: ", std::string(message, length), " (MPI error ", rc, ")"));
}

}  // namespace chai
