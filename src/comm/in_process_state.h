// Shared state of the in-process transport: what the ranks (threads) of a group meet on.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "comm/comm_text.h"
#include "paradit/core/status.h"
#include "paradit/core/tensor.h"

namespace paradit::detail {

struct InProcessGroupState;

// What the world and every group split from it share: one lock and one wake-up signal (so a failure wakes
// every waiter of every group) and the first failure, which every later call rethrows.
struct InProcessDomain {
  std::mutex mu;
  std::condition_variable cv;
  Status failure;
  std::vector<std::weak_ptr<InProcessGroupState>> groups;  // for reset()

  // Under mu: keeps the first failure and wakes every waiter.
  void fail(Status s) {
    if (failure.ok()) failure = std::move(s);
    cv.notify_all();
  }
  // Under mu.
  void throw_if_failed() const {
    if (!failure.ok()) throw Error(failure);
  }
};

// What one rank brings to a collective. Shared, so that its tensors stay alive while other ranks read them,
// even if this rank unwinds on a failure.
struct Contribution {
  std::vector<Tensor> send, recv;
  Tensor tensor;
  int root = -1;
  int color = -1, key = 0;
  std::string name;
};

// One collective call, matched across ranks by its sequence number in the group.
struct CollectiveSlot {
  std::string op;
  std::vector<std::shared_ptr<const Contribution>> parts;  // by group rank; null until that rank arrives
  int arrived = 0;
  std::vector<int> finished;  // per phase: how many ranks are done with it
  int left = 0;
  std::vector<std::pair<std::shared_ptr<InProcessGroupState>, int>> split;  // split: each rank's new group, rank
};

// One point-to-point transfer; the later of the two posts does the copy.
struct Transfer {
  Tensor src, dst;  // from the send and the recv; undefined until that side is posted
  bool done = false;
};

struct Channel {
  std::deque<std::shared_ptr<Transfer>> sends, recvs;  // unmatched, in posting order
};

struct InProcessGroupState {
  std::shared_ptr<InProcessDomain> domain;
  std::string name;
  std::vector<int> members;       // world ranks, by group rank
  std::vector<uint64_t> next_op;  // per rank: sequence number of its next collective
  std::map<uint64_t, CollectiveSlot> slots;
  std::map<std::pair<int, int>, Channel> channels;  // (from, to)

  int size() const { return int(members.size()); }
  std::string describe() const;
  // "rank 2" or "ranks 1, 3", with their world ranks when those differ.
  std::string ranks_str(const std::vector<int>& group_ranks) const;
};

// Creates a group of the domain and registers it for reset(). Under mu (or before any rank runs).
std::shared_ptr<InProcessGroupState> make_group(const std::shared_ptr<InProcessDomain>& domain, std::string name,
                                                std::vector<int> members);

// Waits under lk until done() holds. Throws the family's failure if one comes first; at the deadline records
// Error(kTimeout, timeout_message()) as the family's failure (waking every waiter) and throws it.
template <typename Done, typename Message>
void wait_or_fail(std::unique_lock<std::mutex>& lk, InProcessDomain& d, std::chrono::steady_clock::time_point deadline,
                  Done&& done, Message&& timeout_message) {
  for (;;) {
    if (done()) return;
    d.throw_if_failed();
    if (d.cv.wait_until(lk, deadline) == std::cv_status::timeout && !done()) {
      d.throw_if_failed();
      d.fail(Status(StatusCode::kTimeout, timeout_message()));
      d.throw_if_failed();
    }
  }
}

}  // namespace paradit::detail
