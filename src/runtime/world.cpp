#include "runtime/world.h"

#include "paradit/comm/in_process.h"
#include "paradit/comm/mpi.h"
#include "paradit/comm/nccl.h"
#include "paradit/core/status.h"

namespace paradit::runtime {

std::vector<std::unique_ptr<Communicator>> connect_world(const std::vector<Backend*>& backends) {
  PD_REQUIRE(!backends.empty(), "connect_world: no ranks");
  bool cpu = true, cuda = true;
  for (Backend* be : backends) {
    cpu = cpu && be->device().is_cpu();
    cuda = cuda && be->device().is_cuda();
  }
  // A world of one rank moves no data (every collective of generate_rank is skipped), so it needs no NCCL.
  if (cuda && backends.size() > 1) return create_nccl_communicators(backends);
  PD_REQUIRE(cpu || backends.size() == 1, "the ranks of one engine must all be CPU ranks or all GPU ranks ",
             "(rank 0 is on ", backends[0]->device().str(), ")");
  // The communicators share the group's state; the group object itself is only the way to make them.
  InProcessGroup group(int(backends.size()));
  std::vector<std::unique_ptr<Communicator>> world;
  for (int r = 0; r < group.size(); ++r) world.push_back(group.communicator(r));
  return world;
}

std::unique_ptr<Communicator> connect_mpi_world(Backend& backend, Communicator& host) {
  if (backend.device().is_cuda()) return create_nccl_communicator_mpi(backend, host);
  PD_REQUIRE(backend.device().is_cpu(), "MPI ranks run on CPU or CUDA backends, got ", backend.name());
  return create_mpi_world();
}

}  // namespace paradit::runtime
