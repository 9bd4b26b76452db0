// The NCCL Communicator (compiled only with NCCL): one GPU rank's handle on an NCCL communicator.
#pragma once

#include "comm/nccl/nccl_build.h"

#if PARADIT_HAS_NCCL

#include <cuda_runtime.h>
#include <nccl.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "comm/nccl/peer_copy.h"
#include "paradit/backend/backend.h"
#include "paradit/comm/communicator.h"
#include "paradit/core/status.h"

namespace paradit::detail {

// What the communicators of one process (a world and the groups split from it) share: the first failure —
// every watchdog polls it, so one failing rank stops the others — and how many collectives each rank has
// entered per group, so that a timeout names the ranks that did not arrive.
struct NcclDomain {
  std::mutex mu;
  std::atomic<bool> failed{false};
  Status failure;
  std::map<std::string, std::vector<uint64_t>> entered;  // group id -> per group rank
  // Set when every rank is a GPU of this process with peer access to every other: send/recv batches then run on
  // the copy engines (peer_copy.h).
  std::shared_ptr<PeerMailbox> peer_copy;

  void fail(Status s);
  Status status();
  void enter(const std::string& group, int size, int rank, uint64_t seq);
  // Group ranks that have entered fewer than seq collectives.
  std::vector<int> behind(const std::string& group, uint64_t seq);
};

class NcclCommunicator;

// Stream-ordered transfers a rank keeps in flight before it waits for the oldest: enough for the host to stay a
// few calls ahead of the GPU, few enough that a rank waiting on a dead peer notices within one timeout and never
// fills CUDA's launch queue (where a launch would block the host).
inline constexpr size_t kMaxInFlight = 4;

// One rank's stream-ordered transfers that the host has not yet seen complete, shared by the rank's world
// communicator and every group split from it (all of them run behind the one backend stream). Each has an event
// recorded after it, a deadline and what its timeout says; the host retires the oldest ones before it queues
// more, which bounds how far it runs ahead and times every transfer without a watchdog thread.
struct NcclInFlight {
  struct Transfer {
    cudaEvent_t done = nullptr;
    std::chrono::steady_clock::time_point deadline;
    std::function<std::string()> timeout_message;
  };
  bool stream_ordered = false;
  std::deque<Transfer> transfers;  // oldest first
  std::vector<cudaEvent_t> spare;  // completed events, reused
  std::vector<NcclCommunicator*> comms;  // the rank's communicators: a failure aborts them all

  ~NcclInFlight();
  // An event from the spare list or a new one (timing disabled).
  cudaEvent_t take_event();
};

// A contiguous stand-in for a tensor NCCL cannot address directly (a strided view): packed before a send,
// unpacked after a receive, through the backend's copy. The tensor itself when it is contiguous.
struct Staged {
  Tensor user, buffer;
  static Staged for_send(Backend& be, const Tensor& t);
  static Staged for_recv(Backend& be, const Tensor& t);
  void unpack(Backend& be) const;
  void* ptr() const { return buffer.data(); }
  size_t bytes() const { return buffer.nbytes(); }
};

// Keeps the first failing result of the NCCL calls issued inside a group: nothing may throw between
// ncclGroupStart and ncclGroupEnd, or the thread's group would be left open.
struct FirstError {
  ncclResult_t result = ncclSuccess;
  void operator()(ncclResult_t r) {
    if (result == ncclSuccess && r != ncclSuccess && r != ncclInProgress) result = r;
  }
};

class NcclRequest;
class PeerCopyRequest;

class NcclCommunicator final : public Communicator {
 public:
  // Takes ownership of comm (initialised, nonblocking). in_flight: the rank's stream-ordered transfers (a new
  // world passes null for a fresh one).
  NcclCommunicator(Backend& be, ncclComm_t comm, std::shared_ptr<NcclDomain> domain, std::string group_id,
                   std::string name, std::vector<int> members, int rank,
                   std::shared_ptr<NcclInFlight> in_flight = nullptr);
  ~NcclCommunicator() override;

  int rank() const override { return rank_; }
  int size() const override { return int(members_.size()); }
  const std::string& name() const override { return name_; }
  const std::vector<int>& members() const override { return members_; }

  void all_to_all_v(std::span<const Tensor> recv, std::span<const Tensor> send) override;
  void all_gather_v(std::span<const Tensor> recv, const Tensor& send) override;
  void reduce_scatter_v(const Tensor& recv, std::span<const Tensor> send) override;
  void all_reduce(const Tensor& t) override;
  void broadcast(const Tensor& t, int root) override;
  void barrier() override;
  std::unique_ptr<CommRequest> start(std::vector<P2POp> ops) override;
  std::unique_ptr<Communicator> split(int color, int key, const std::string& name) override;
  void abort(const std::string& reason) noexcept override;
  void set_stream_ordered(bool on) override;
  void wait_all() override;

 private:
  friend class NcclRequest;
  friend class PeerCopyRequest;

  // start() on the copy engines (domain_->peer_copy set): see peer_copy.h.
  std::unique_ptr<CommRequest> start_on_copy_engines(std::vector<P2POp> ops,
                                                     std::chrono::steady_clock::time_point deadline,
                                                     const std::string& message);
  // The stream this rank's copies from `peer` run on (made at first use).
  cudaStream_t peer_stream(int peer);

  // Polls until done() holds, watching NCCL's asynchronous errors, the family's failure and the deadline; on
  // any of them records the failure, aborts the NCCL communicator (freeing its spinning kernels) and throws.
  // done() returns false while work is pending; timeout_message() explains a timeout.
  void watch(std::chrono::steady_clock::time_point deadline, const std::function<bool()>& done,
             const std::function<std::string()>& timeout_message);
  // One collective: enters it in the domain, checks the family's health, issues the NCCL calls in one group
  // behind the backend's queued work (issue_group), then either waits for the transfer (synchronous) or tracks
  // it and puts the backend's stream behind it (stream-ordered).
  void collective(const std::string& op, const std::function<void(FirstError&)>& issue);
  // Issues `issue` in an NCCL group on stream_ after the backend's queued work (it wrote the inputs, and may
  // still read buffers this call overwrites: Ring's double buffers) — on the host (synchronous) or through an
  // event (stream-ordered) — and waits until the communicator accepted the group.
  void issue_group(std::chrono::steady_clock::time_point deadline, const std::function<void(FirstError&)>& issue,
                   const std::function<std::string()>& timeout_message);
  // Stream-ordered: an event (from the rank's pool) recorded after what stream_ holds.
  cudaEvent_t record_after_issued();
  // Stream-ordered: keeps what stream_ holds in flight with its deadline (retire() times it).
  void track(std::chrono::steady_clock::time_point deadline, std::function<std::string()> timeout_message);
  // Makes the backend's stream wait for `done` (no host wait) and returns the event to the pool.
  void join_compute(cudaEvent_t done);
  // Waits (polling, timed) until at most `keep` of this rank's transfers are in flight.
  void retire(size_t keep);
  // Polls (as watch() does) until everything queued on `stream` so far is complete.
  void wait_queue(cudaStream_t stream, std::chrono::steady_clock::time_point deadline,
                  const std::function<std::string()>& timeout_message);
  // Polls an event until it completes, as watch() does.
  void watch_event(cudaEvent_t e, std::chrono::steady_clock::time_point deadline,
                   const std::function<std::string()>& timeout_message);
  // Throws (after failing the family and aborting) unless r is ncclSuccess or ncclInProgress.
  void check(ncclResult_t r, const char* call);
  void check_cuda(cudaError_t e, const char* call);
  [[noreturn]] void fail(Status s);
  // Throws the family's failure if there is one, after aborting this rank's communicators.
  void throw_if_failed();
  void abort_nccl() noexcept;
  // Aborts every communicator of this rank (freeing whatever NCCL kernel its stream waits on).
  void abort_rank() noexcept;
  void require_device(const Tensor& t, const char* op) const;
  // What a timeout of collective #seq says (the ranks of the group that had not entered it); evaluated when it
  // fires, possibly after this communicator is gone, so everything is captured by value.
  std::function<std::string()> collective_timeout(const std::string& op, uint64_t seq) const;

  Backend& be_;
  ncclComm_t comm_;
  cudaStream_t stream_ = nullptr;   // where this communicator's NCCL work runs
  cudaStream_t compute_ = nullptr;  // the backend's stream
  cudaEvent_t inputs_ready_ = nullptr;  // recorded on compute_ for stream_ to wait on
  std::vector<cudaStream_t> peer_streams_;  // per group rank, for copies from it (peer_stream)
  std::shared_ptr<NcclDomain> domain_;
  std::shared_ptr<NcclInFlight> in_flight_;  // this rank's, shared with the groups split from this one
  std::string group_id_, name_;
  std::vector<int> members_;
  int rank_;
  uint64_t seq_ = 0;  // collectives entered
  Tensor scratch_;    // one float for barrier()
};

// A send/recv batch dropped without wait(): its transfers may still use the buffers it keeps alive, so it is waited
// for first; a failure is logged, since a destructor cannot throw.
void wait_dropped(CommRequest& request) noexcept;

// ncclConfig_t for nonblocking communicators: no NCCL call may block the host, so the watchdog keeps control.
ncclConfig_t nonblocking_config();

}  // namespace paradit::detail

#endif
