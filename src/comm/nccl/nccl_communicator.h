// The NCCL Communicator (compiled only with NCCL): one GPU rank's handle on an NCCL communicator.
#pragma once

#include "comm/nccl/nccl_build.h"

#if PARADIT_HAS_NCCL

#include <cuda_runtime.h>
#include <nccl.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "paradit/backend/backend.h"
#include "paradit/comm/communicator.h"
#include "paradit/core/status.h"

namespace paradit::detail {

// One NCCL communicator handle, shared by its NcclCommunicator (which issues on it) and the domain's watchdog
// (which may abort it from its own thread): every use holds mu, and an aborted handle is never used again.
struct NcclHandle {
  std::mutex mu;
  ncclComm_t comm = nullptr;  // null once aborted
  // Aborts the communicator (freeing its spinning kernels) unless done already. The caller holds mu.
  void abort_locked() noexcept;
};

// Work issued on a stream, not waited for by the host: its completion event, the GPU it runs on, and when it
// counts as hung.
struct NcclPending {
  cudaEvent_t done = nullptr;
  int device = 0;
  std::chrono::steady_clock::time_point deadline;
  std::function<std::string()> timeout_message;
};

// What the communicators of one process (a world and the groups split from it) share: the first failure —
// every call checks it, so one failing rank stops the others — how many collectives each rank has entered per
// group, so that a timeout names the ranks that did not arrive, and the watchdog.
//
// Transfers run in stream order (the backend's stream waits for them on the GPU, the host does not), so a
// thread watches their completion events instead: one that fails or outlives its deadline fails the domain and
// aborts every communicator of it. Aborting frees the NCCL kernels a hung transfer left spinning, so the streams
// drain, host waits return, and each rank's next call throws the failure.
struct NcclDomain {
  std::mutex mu;
  std::atomic<bool> failed{false};
  Status failure;
  std::map<std::string, std::vector<uint64_t>> entered;  // group id -> per group rank

  ~NcclDomain();
  void fail(Status s);
  Status status();
  void enter(const std::string& group, int size, int rank, uint64_t seq);
  // Group ranks that have entered fewer than seq collectives.
  std::vector<int> behind(const std::string& group, uint64_t seq);

  void add(const std::shared_ptr<NcclHandle>& h);
  // Hands pending work to the watchdog (which destroys the event once it has completed).
  void watch(NcclPending p);
  // Whether work issued on `device` is still pending.
  bool busy(int device);
  // Fails the domain with s and aborts every communicator.
  void fail_and_abort(Status s);
  // Starts the watchdog if needed and has it look at the domain now (after fail(): it aborts the communicators).
  void wake();

 private:
  void watchdog_loop();
  void abort_handles();
  bool handles_aborted_ = false;
  std::vector<std::weak_ptr<NcclHandle>> handles_;
  std::deque<NcclPending> pending_;
  std::condition_variable cv_;
  std::thread watchdog_;
  bool stop_ = false;
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

class NcclCommunicator final : public Communicator {
 public:
  // Takes ownership of comm (initialised, nonblocking).
  NcclCommunicator(Backend& be, ncclComm_t comm, std::shared_ptr<NcclDomain> domain, std::string group_id,
                   std::string name, std::vector<int> members, int rank);
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
  void wait_all() override;

 private:
  friend class NcclRequest;

  // Polls (holding handle_->mu) until done() holds, watching NCCL's asynchronous errors, the family's failure and
  // the deadline; on any of them records the failure, aborts the NCCL communicator and throws. done() returns
  // false while work is pending; timeout_message() explains a timeout.
  void watch(std::chrono::steady_clock::time_point deadline, const std::function<bool()>& done,
             const std::function<std::string()>& timeout_message);
  // One collective: enters it in the domain, checks the family's health, issues the NCCL calls in one group
  // behind the backend's queued work and puts the backend's stream behind them (issue_group, then
  // join_compute). Returns before the transfer is complete; the watchdog times it.
  void collective(const std::string& op, const std::function<void(FirstError&)>& issue);
  // Issues `issue` in an NCCL group on stream_, after the work queued on the backend's stream so far (it wrote
  // the inputs, and may still read buffers this call overwrites: Ring's double buffers), and waits until the
  // communicator accepted it.
  void issue_group(std::chrono::steady_clock::time_point deadline, const std::function<void(FirstError&)>& issue,
                   const std::function<std::string()>& timeout_message);
  // Records an event on stream_ after what was issued there, makes the backend's stream wait for it (no host
  // wait) and hands it to the watchdog with the deadline.
  void join_compute(std::chrono::steady_clock::time_point deadline, std::function<std::string()> message);
  // Throws (after failing the family and aborting) unless r is ncclSuccess or ncclInProgress. The caller
  // holds handle_->mu.
  void check(ncclResult_t r, const char* call);
  void check_cuda(cudaError_t e, const char* call);
  [[noreturn]] void fail(Status s);
  // Throws the family's failure if there is one (aborting this communicator first). The caller holds
  // handle_->mu.
  void throw_if_failed();
  void require_device(const Tensor& t, const char* op) const;
  // What a timeout of collective #seq says: the ranks of the group that had not entered it.
  std::function<std::string()> timeout_message(const std::string& op, uint64_t seq) const;

  Backend& be_;
  std::shared_ptr<NcclHandle> handle_;
  ncclComm_t comm_ = nullptr;    // handle_->comm while it is not aborted (read under handle_->mu)
  cudaStream_t stream_ = nullptr;  // where this communicator's NCCL work runs
  cudaStream_t compute_ = nullptr;  // the backend's stream
  std::shared_ptr<NcclDomain> domain_;
  std::string group_id_, name_;
  std::vector<int> members_;
  int rank_;
  uint64_t seq_ = 0;  // collectives entered
  Tensor scratch_;    // one float for barrier()
};

// ncclConfig_t for nonblocking communicators: no NCCL call may block the host, so the watchdog keeps control.
ncclConfig_t nonblocking_config();

}  // namespace paradit::detail

#endif
