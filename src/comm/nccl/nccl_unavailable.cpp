// The NCCL entry points of a build without NCCL.
#include "comm/nccl/nccl_build.h"

#if !PARADIT_HAS_NCCL

#include "paradit/comm/nccl.h"
#include "paradit/core/status.h"

namespace paradit {

namespace {
const char* kWhy =
#if defined(PARADIT_WITH_CUDA)
    "this build found no nccl.h (install NCCL next to the CUDA toolkit and rebuild)";
#else
    "this build has no CUDA (configure with a CUDA toolkit and PARADIT_CUDA=AUTO or ON)";
#endif
}  // namespace

std::vector<std::unique_ptr<Communicator>> create_nccl_communicators(const std::vector<Backend*>&) {
  PD_THROW(kUnavailable, "NCCL communicators: ", kWhy);
}

std::unique_ptr<Communicator> create_nccl_communicator_mpi(Backend&, Communicator&) {
  PD_THROW(kUnavailable, "NCCL communicators: ", kWhy);
}

}  // namespace paradit

#endif
