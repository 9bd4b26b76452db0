// Tests over NCCL: P CUDA backends (GPUs 0..P−1), their NCCL world, and a thread per GPU. Header-only: only the
// tests under tests/gpu include it.
#pragma once

#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "paradit/backend/backend.h"
#include "paradit/comm/nccl.h"
#include "paradit/core/status.h"

namespace paradit::test {

struct GpuRanks {
  std::vector<std::unique_ptr<Backend>> backends;
  std::vector<std::unique_ptr<Communicator>> comms;
};

// P CUDA backends and their NCCL world, or empty after a skip-worthy reason in *why (too few GPUs, a build
// without NCCL).
inline GpuRanks gpu_ranks(int P, std::string* why) {
  GpuRanks r;
  if (cuda_device_count(why) < P) {
    *why = detail::concat("needs ", P, " GPUs");
    return r;
  }
  std::vector<Backend*> raw;
  for (int i = 0; i < P; ++i) {
    r.backends.push_back(create_cuda_backend(i));
    raw.push_back(r.backends.back().get());
  }
  try {
    r.comms = create_nccl_communicators(raw);
  } catch (const Error& e) {
    if (e.status().code() != StatusCode::kUnavailable) throw;
    *why = e.what();
  }
  return r;
}

// Runs fn(rank, backend, communicator) on a thread per GPU; a rank that throws aborts the family (so the others
// stop too), and the first error is rethrown after all have ended.
inline void on_gpus(GpuRanks& g, const std::function<void(int, Backend&, Communicator&)>& fn) {
  std::vector<std::exception_ptr> errors(g.backends.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < g.backends.size(); ++i)
    threads.emplace_back([&, i] {
      try {
        fn(int(i), *g.backends[i], *g.comms[i]);
      } catch (const std::exception& e) {
        errors[i] = std::current_exception();
        g.comms[i]->abort(e.what());
      }
    });
  for (auto& t : threads) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace paradit::test
