// The NCCL Communicator (compiled only with NCCL): one GPU rank's handle on an NCCL communicator.
#pragma once

#include "comm/nccl/nccl_build.h"

#if PARADIT_HAS_NCCL

#include <cuda_runtime.h>
#include <nccl.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

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

  void fail(Status s);
  Status status();
  void enter(const std::string& group, int size, int rank, uint64_t seq);
  // Group ranks that have entered fewer than seq collectives.
  std::vector<int> behind(const std::string& group, uint64_t seq);
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

 private:
  friend class NcclRequest;

  // Polls until done() holds, watching NCCL's asynchronous errors, the family's failure and the deadline; on
  // any of them records the failure, aborts the NCCL communicator (freeing its spinning kernels) and throws.
  // done() returns false while work is pending; timeout_message() explains a timeout.
  void watch(std::chrono::steady_clock::time_point deadline, const std::function<bool()>& done,
             const std::function<std::string()>& timeout_message);
  // One collective: enters it in the domain, checks the family's health, waits for the backend's queued work
  // (the inputs, and earlier reads of buffers this call overwrites), issues the NCCL calls in one group and
  // waits for the group to be accepted, then for the stream to finish.
  void collective(const std::string& op, const std::function<void(FirstError&)>& issue);
  // Issues `issue` in an NCCL group on stream_ and waits until the communicator accepted it.
  void issue_group(std::chrono::steady_clock::time_point deadline, const std::function<void(FirstError&)>& issue,
                   const std::function<std::string()>& timeout_message);
  // Throws (after failing the family and aborting) unless r is ncclSuccess or ncclInProgress.
  void check(ncclResult_t r, const char* call);
  void check_cuda(cudaError_t e, const char* call);
  [[noreturn]] void fail(Status s);
  void abort_nccl() noexcept;
  void require_device(const Tensor& t, const char* op) const;
  std::string collective_timeout(const std::string& op, uint64_t seq);

  Backend& be_;
  ncclComm_t comm_;
  cudaStream_t stream_ = nullptr;
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
