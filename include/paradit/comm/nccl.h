// The NCCL transport: communicators over the GPUs of this process, one worker thread per GPU.
//
// Built when CUDA and NCCL are (PARADIT_WITH_CUDA and nccl.h); otherwise create_nccl_communicators throws
// Error(kUnavailable) saying what is missing. Several processes (one GPU each, started by MPI):
// create_nccl_communicator_mpi.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "paradit/backend/backend.h"
#include "paradit/comm/communicator.h"

namespace paradit {

// A world of backends.size() ranks: communicator i moves the tensors of backends[i] (CUDA backends on distinct
// GPUs). Call once from one thread, then hand communicator i to the worker thread of GPU i. The backends must
// outlive the communicators, and a communicator must outlive the requests it started.
//
// Each call waits for the backend's queued work (its inputs), runs on the communicator's own stream and returns
// when the transfer is complete (start() returns at once; wait() completes it), polled by a watchdog that
// turns NCCL errors, a failure on another rank of this process, and the timeout into exceptions after
// aborting the NCCL communicator, so no GPU kernel is left spinning. NCCL cannot check that the pieces two
// ranks exchange agree in size: a mismatch is an error NCCL may report, or a timeout.
std::vector<std::unique_ptr<Communicator>> create_nccl_communicators(const std::vector<Backend*>& backends);

// This process's rank of an NCCL world over every rank of `host` (one process per rank, one GPU each: be's;
// host.rank() is the NCCL rank). Host rank 0 makes the NCCL unique id and host broadcasts it — an MPI world
// (mpi.h) across nodes. Collective over host; otherwise as create_nccl_communicators. The NCCL communicator
// shares failures only within this process: another process's failure reaches it as an NCCL error or a timeout.
std::unique_ptr<Communicator> create_nccl_communicator_mpi(Backend& be, Communicator& host);

}  // namespace paradit
