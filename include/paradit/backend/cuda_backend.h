// What the CUDA backend offers beyond the Backend op set: memory statistics for benchmarks and its stream.
//
// create_cuda_backend() returns a Backend; as_cuda_backend() recovers this interface from it (null for a
// backend of another kind). The header needs no CUDA headers, so front ends built without CUDA compile it too.
#pragma once

#include <cstddef>

#include "paradit/backend/backend.h"
#include "paradit/core/allocator.h"

namespace paradit {

class CudaBackend : public Backend {
 public:
  // Bytes of device memory handed out by this backend's caching allocator: in use now, the high-water mark
  // since the last reset_peak(), and reserved from cudaMalloc (in use + cached). Weights, activations and
  // scratch (GEMM and attention workspaces) all come from it; the libraries' own handles do not.
  virtual AllocatorStats memory_stats() const = 0;
  size_t peak_bytes() const { return memory_stats().peak_in_use; }
  virtual void reset_peak() = 0;
  // Gives every cached (free) block back to cudaFree.
  virtual void release_cached() = 0;
  // The one stream every op of this backend runs on (a cudaStream_t), for code that must order its own work
  // after it (NCCL, CUDA graphs).
  virtual void* stream() const = 0;
};

inline CudaBackend* as_cuda_backend(Backend& backend) { return dynamic_cast<CudaBackend*>(&backend); }

}  // namespace paradit
