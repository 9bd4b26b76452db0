// The MPI transport: ranks in separate processes, started by an MPI launcher (mpirun, srun), one rank each.
//
// How paradit runs over several nodes: every process holds one rank; for CPU ranks the MPI communicator moves
// the data, for GPU ranks MPI only bootstraps NCCL (nccl.h, create_nccl_communicator_mpi) and carries the
// results to world rank 0. Built when CMake finds MPI (PARADIT_WITH_MPI); otherwise mpi_available() says why and
// everything else throws Error(kUnavailable).
//
// The communicator keeps the Communicator contract across processes: every call is nonblocking MPI polled
// against timeout(); a failure on one process (abort(), a timeout, pieces that do not fit) is sent to every
// other process on a control channel of its own, so all ranks' pending and later calls throw.
#pragma once

#include <memory>
#include <string>

#include "paradit/comm/communicator.h"

namespace paradit {

// Whether this build has MPI; *why says what is missing when not.
bool mpi_available(std::string* why = nullptr);

// The number of processes of the MPI launch that started this process, from the launcher's environment
// (OMPI_COMM_WORLD_SIZE, PMI_SIZE, SLURM_NTASKS); 1 when it was not started by a launcher, or as the only
// process. Reads the environment only: needs no MPI.
int mpi_launch_size();

// This process's place in the launch.
struct MpiProcess {
  int rank = 0, size = 1;              // in MPI_COMM_WORLD
  int local_rank = 0, local_size = 1;  // among the processes of this node (MPI_COMM_TYPE_SHARED)
};

// Initialises MPI once for this process (MPI_THREAD_MULTIPLE: any thread may call the communicators) and
// finalises it at exit. Throws Error(kUnavailable) without MPI.
const MpiProcess& mpi_process();

// This process's communicator of a fresh world over every process of the launch (rank = MPI rank), moving host
// tensors. Collective: every process calls it, in the same order as its other MPI world creations.
std::unique_ptr<Communicator> create_mpi_world();

}  // namespace paradit
