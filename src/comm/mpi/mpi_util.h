// Small helpers of the MPI transport (compiled only with MPI).
#pragma once

#include <mpi.h>

#include <string>

#include "paradit/core/status.h"

namespace paradit::detail {

// MPI's text for an error code.
std::string mpi_error_string(int rc);

// Throws Error(kUnavailable, "<call>: <MPI's text>") unless rc is MPI_SUCCESS.
void mpi_check(int rc, const char* call);

}  // namespace paradit::detail
