// Whether an MPI launcher started this process: environment only, so builds without MPI can say so clearly.
#include <cstdlib>

#include "paradit/comm/mpi.h"

namespace paradit {

int mpi_launch_size() {
  // Open MPI's mpirun, then PMI launchers (MPICH's hydra, srun --mpi=pmi2/pmix), then Slurm itself.
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_NTASKS"}) {
    const char* v = std::getenv(var);
    if (v == nullptr || *v == '\0') continue;
    char* end = nullptr;
    const long n = std::strtol(v, &end, 10);
    if (end != v && *end == '\0' && n >= 1) return int(n);
  }
  return 1;
}

}  // namespace paradit
