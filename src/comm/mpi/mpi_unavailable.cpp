// The MPI entry points of a build without MPI.
#if !defined(PARADIT_WITH_MPI)

#include "paradit/comm/mpi.h"
#include "paradit/core/status.h"

namespace paradit {

namespace {
const char* kWhy = "this build has no MPI (install an MPI, e.g. libopenmpi-dev, and reconfigure with PARADIT_MPI=AUTO or ON)";
}  // namespace

bool mpi_available(std::string* why) {
  if (why) *why = kWhy;
  return false;
}

const MpiProcess& mpi_process() { PD_THROW(kUnavailable, "MPI: ", kWhy); }

std::unique_ptr<Communicator> create_mpi_world() { PD_THROW(kUnavailable, "MPI communicator: ", kWhy); }

}  // namespace paradit

#endif
