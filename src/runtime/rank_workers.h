// One long-lived thread per rank, running the same job on every rank at once.
//
// Long-lived because a rank's backend belongs to its thread: a GPU backend is made, fed and synchronised from
// the thread that owns the device's work, request after request.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "paradit/core/status.h"

namespace paradit::runtime {

class RankWorkers {
 public:
  // Starts `ranks` threads; throws Error(kUnavailable) when the system refuses one (those started are stopped).
  explicit RankWorkers(int ranks);
  ~RankWorkers();
  RankWorkers(const RankWorkers&) = delete;
  RankWorkers& operator=(const RankWorkers&) = delete;

  int size() const { return int(threads_.size()); }
  // Runs job(rank) on every rank's thread and returns once all have finished, with each rank's outcome (an
  // exception becomes its Status). One run at a time.
  std::vector<Status> run(const std::function<void(int rank)>& job);

 private:
  void loop(int rank);
  void stop() noexcept;

  std::mutex mu_;
  std::condition_variable wake_, done_;
  const std::function<void(int)>* job_ = nullptr;
  uint64_t generation_ = 0;  // which run the threads should do next
  int pending_ = 0;          // ranks still running the current run
  bool stopping_ = false;
  std::vector<Status> outcomes_;
  std::vector<std::thread> threads_;
};

}  // namespace paradit::runtime
