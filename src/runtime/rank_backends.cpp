#include "runtime/rank_backends.h"

#include <algorithm>
#include <thread>

#include "paradit/core/log.h"
#include "paradit/core/status.h"

namespace paradit::runtime {

namespace {

BackendFactory cpu_ranks(int threads_per_rank, int world) {
  PD_REQUIRE(threads_per_rank >= 0, "threads per rank must be >= 0 (0: share the cores), got ", threads_per_rank);
  const int cores = int(std::max(1u, std::thread::hardware_concurrency()));
  const int threads = threads_per_rank > 0 ? threads_per_rank : std::max(1, cores / world);
  return [threads](int) { return create_cpu_backend(threads); };
}

}  // namespace

BackendFactory rank_backends(const std::string& device, int threads_per_rank, const DeviceMesh& mesh) {
  const int world = mesh.world();
  if (device == "cpu") return cpu_ranks(threads_per_rank, world);
  if (world == 1) return [device](int) { return create_backend(device); };

  const std::string flags = mesh.degrees().flags();
  PD_REQUIRE(device.rfind("cuda:", 0) != 0, "--device ", device, " names one GPU, but ", flags, " runs ", world,
             " ranks on GPUs 0..", world - 1, ": pass --device cuda (or --device cpu for CPU ranks)");
  PD_REQUIRE(device == "cuda" || device == "auto", "bad device '", device,
             "': expected cpu, cuda or auto (cuda:N only with a single rank)");
  std::string why;
  const int gpus = cuda_device_count(&why);
  if (gpus >= world) return [](int rank) { return create_cuda_backend(rank); };
  if (device == "auto" && gpus == 0) {
    PD_LOG(kWarn, "no usable GPU (", why, "): running ", world, " CPU ranks");
    return cpu_ranks(threads_per_rank, world);
  }
  PD_THROW(kInvalidArgument, flags, " needs ", world, " GPUs but ", gpus, gpus == 1 ? " is" : " are", " usable",
           gpus == 0 ? " (" + why + ")" : std::string(), ": ",
           gpus > 1 ? "ask for at most " + std::to_string(gpus) + " ranks (e.g. --gpus " + std::to_string(gpus) +
                          "), or "
                    : std::string(),
           "pass --device cpu to run ", world, " CPU ranks");
}

BackendFactory mpi_rank_backend(const std::string& device, int threads_per_rank, int local_rank, int local_size) {
  if (device == "cpu") return cpu_ranks(threads_per_rank, local_size);
  PD_REQUIRE(device == "cuda" || device == "auto", "--device ", device, " under MPI: expected cpu, cuda or auto ",
             "(each process takes the GPU of its local rank)");
  std::string why;
  const int gpus = cuda_device_count(&why);
  if (gpus == 0 && device == "auto") {
    PD_LOG(kWarn, "no usable GPU (", why, "): this process runs a CPU rank");
    return cpu_ranks(threads_per_rank, local_size);
  }
  PD_REQUIRE(local_rank < gpus, "this node runs ", local_size, " MPI processes, one GPU each, but ", gpus,
             gpus == 1 ? " is" : " are", " usable", gpus == 0 ? " (" + why + ")" : std::string(),
             ": start at most ", gpus, " processes per node, or pass --device cpu");
  return [local_rank](int) { return create_cuda_backend(local_rank); };
}

}  // namespace paradit::runtime
