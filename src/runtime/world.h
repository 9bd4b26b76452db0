// The world communicators of an engine's ranks, over the transport their backends call for.
#pragma once

#include <memory>
#include <vector>

#include "paradit/backend/backend.h"
#include "paradit/comm/communicator.h"

namespace paradit::runtime {

// A fresh world of backends.size() ranks, communicator r for backends[r]: the in-process transport for CPU
// backends (ranks are threads of this process) and for a single rank, NCCL for CUDA backends (one GPU each).
// Call from one thread.
// After a failure the old world is dead (its communicators keep throwing): make a new one.
std::vector<std::unique_ptr<Communicator>> connect_world(const std::vector<Backend*>& backends);

// Under an MPI launch (one rank per process): this process's communicator of a fresh world over every process —
// the MPI transport for a CPU backend, NCCL bootstrapped over `host` (an MPI world) for a CUDA one. Collective
// over every process.
std::unique_ptr<Communicator> connect_mpi_world(Backend& backend, Communicator& host);

}  // namespace paradit::runtime
