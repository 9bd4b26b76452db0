// Which backend each rank of an engine gets, from EngineOptions::device.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "paradit/backend/backend.h"
#include "paradit/parallel/device_mesh.h"

namespace paradit::runtime {

using BackendFactory = std::function<std::unique_ptr<Backend>(int rank)>;

// Checked against the machine now, before any worker starts: a mesh that needs more GPUs than there are is
// refused saying what would work. One rank takes any device create_backend takes; several take "cpu" (CPU
// ranks of threads_per_rank threads, 0: the cores shared evenly), "cuda" (rank i on GPU i) or "auto" (GPUs if
// there are enough, CPU ranks if there is no GPU).
BackendFactory rank_backends(const std::string& device, int threads_per_rank, const DeviceMesh& mesh);

// The backend of this process's rank under an MPI launch, from its place on its node (local rank and size):
// "cpu" (a CPU rank: threads_per_rank threads, 0 the node's cores shared among its processes), "cuda" or "auto"
// (the local rank's GPU; auto: a CPU rank when the node has no GPU).
BackendFactory mpi_rank_backend(const std::string& device, int threads_per_rank, int local_rank, int local_size);

}  // namespace paradit::runtime
