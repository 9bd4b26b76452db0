#include "backend/cpu/cpu_backend.h"

#include <cblas.h>
#include <omp.h>

#include <memory>

#include "paradit/core/status.h"

namespace paradit {

CpuBackend::CpuBackend(int threads, Allocator& allocator)
    : threads_(threads > 0 ? threads : omp_get_num_procs()), allocator_(&allocator) {
  // We parallelise matmuls ourselves (tiles over OpenMP threads, each calling a single-threaded sgemm): that
  // honours `threads` per backend and lets several backends run side by side as CPU ranks. OpenBLAS's own
  // thread pool would fight our OpenMP threads for the same cores, so it is kept to one thread. The setting
  // is process-wide, which is fine since this backend is OpenBLAS's only user.
  openblas_set_num_threads(1);
}

std::string CpuBackend::name() const {
  return "cpu (" + std::to_string(threads_) + (threads_ == 1 ? " thread)" : " threads)");
}

std::unique_ptr<Backend> create_cpu_backend(int threads) { return create_cpu_backend(threads, cpu_allocator()); }

std::unique_ptr<Backend> create_cpu_backend(int threads, Allocator& allocator) {
  PD_REQUIRE(threads >= 0, "create_cpu_backend: threads must be >= 0 (0 = every core), got ", threads);
  PD_REQUIRE(allocator.device().is_cpu(), "create_cpu_backend: the allocator is for ", allocator.device().str(),
             ", not host memory");
  return std::make_unique<CpuBackend>(threads, allocator);
}

}  // namespace paradit
