// The in-process transport: CPU ranks as threads of one process, moving data through shared memory.
//
// The CPU runtime and every multi-rank test run on it, so each parallel algorithm is exercised without a GPU.
// Ranks meet at a rendezvous (mutex + condition variable) and each copies its own share of the data straight
// from the other ranks' buffers; nobody leaves a collective while another rank may still read its buffers.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "paradit/comm/communicator.h"
#include "paradit/core/status.h"

namespace paradit {

namespace detail {
struct InProcessGroupState;
}

// A world of `size` ranks; hands out their communicators (host tensors only).
class InProcessGroup {
 public:
  explicit InProcessGroup(int size, std::string name = "world");
  ~InProcessGroup();
  InProcessGroup(const InProcessGroup&) = delete;
  InProcessGroup& operator=(const InProcessGroup&) = delete;

  int size() const { return size_; }
  // A handle on the shared state for `rank`; any number may exist, all equivalent.
  std::unique_ptr<Communicator> communicator(int rank);

  // Clears a failure (abort, timeout, mismatch) in the world and every group split from it, so the same
  // group serves a new run. Only while no rank is inside a call — e.g. after run_ranks returned.
  void reset();

 private:
  int size_;
  std::shared_ptr<detail::InProcessGroupState> world_;
};

// Runs fn on size() threads, one per rank, each with its rank's world communicator. When a rank throws, its
// communicator is aborted with the error's message so the other ranks stop (kCancelled) instead of waiting for
// it. Returns every rank's outcome.
std::vector<Status> run_ranks(InProcessGroup& group, const std::function<void(Communicator&)>& fn);

// The failure that stopped a run: the first outcome that is not merely a cancellation caused by another
// rank's failure (else the first failure at all), or Ok when every rank succeeded.
Status first_failure(const std::vector<Status>& outcomes);

}  // namespace paradit
