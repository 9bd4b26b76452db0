// The NCCL transport: communicators over the GPUs of this process, one worker thread per GPU.
//
// Built when CUDA and NCCL are (PARADIT_WITH_CUDA and nccl.h); otherwise nccl_available() says why and
// create_nccl_communicators throws Error(kUnavailable). Several processes (MPI bootstrap of the NCCL unique id)
// come later.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "paradit/backend/backend.h"
#include "paradit/comm/communicator.h"

namespace paradit {

// Whether this build can create NCCL communicators; *why says what is missing when not.
bool nccl_available(std::string* why = nullptr);

// A world of backends.size() ranks: communicator i moves the tensors of backends[i] (CUDA backends on distinct
// GPUs). Call once from one thread, then hand communicator i to the worker thread of GPU i. The backends must
// outlive the communicators, and a communicator must outlive the requests it started.
//
// Calls run in stream order: the transfer runs on the communicator's own stream behind the backend's queued
// work (its inputs), the backend's stream waits for it, and the call returns once NCCL has accepted it — the
// host never waits for a transfer (start() returns at once; wait() puts the backend's stream behind it; barrier()
// and wait_all() do wait). A watchdog thread times every transfer: an NCCL or CUDA error, a failure on another
// rank of this process, or the timeout fails the family and aborts every NCCL communicator of it (so no GPU
// kernel is left spinning and host waits return), and each rank's next call throws. NCCL cannot check that the
// pieces two ranks exchange agree in size: a mismatch is an error NCCL may report, or a timeout.
std::vector<std::unique_ptr<Communicator>> create_nccl_communicators(const std::vector<Backend*>& backends);

}  // namespace paradit
