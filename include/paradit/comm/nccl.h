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
// Each call runs on the communicator's own stream behind the backend's queued work (its inputs). Synchronous
// (the default), it returns when the transfer is complete (start() returns at once; wait() completes it);
// stream-ordered (Communicator::set_stream_ordered), it returns once the transfer is queued and the backend's
// stream waits for it on the device, and the host keeps at most a few transfers in flight, waiting for the
// oldest before it queues another. Every wait polls: NCCL errors, a failure on another rank of this process
// and the timeout become exceptions after the rank's NCCL communicators are aborted, so no GPU kernel is left
// spinning and no thread blocks for good. NCCL cannot check that the pieces two ranks exchange agree in size:
// a mismatch is an error NCCL may report, or a timeout.
std::vector<std::unique_ptr<Communicator>> create_nccl_communicators(const std::vector<Backend*>& backends);

// This process's rank of an NCCL world over every rank of `host` (one process per rank, one GPU each: be's;
// host.rank() is the NCCL rank). Host rank 0 makes the NCCL unique id and host broadcasts it — an MPI world
// (mpi.h) across nodes. Collective over host; otherwise as create_nccl_communicators. The NCCL communicator
// shares failures only within this process: another process's failure reaches it as an NCCL error or a timeout.
std::unique_ptr<Communicator> create_nccl_communicator_mpi(Backend& be, Communicator& host);

}  // namespace paradit
