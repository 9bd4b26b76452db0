#include "comm/nccl/nccl_communicator.h"

#if PARADIT_HAS_NCCL

#include <algorithm>
#include <thread>
#include <utility>

#include "comm/comm_text.h"
#include "paradit/backend/cuda_backend.h"
#include "paradit/core/log.h"

namespace paradit::detail {

namespace {

using Clock = std::chrono::steady_clock;

// A communicator made by ncclCommSplit, aborted unless handed over.
struct ChildComm {
  ncclComm_t comm = nullptr;
  ~ChildComm() {
    if (comm) ncclCommAbort(comm);
  }
};

}  // namespace

ncclConfig_t nonblocking_config() {
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  return config;
}

void NcclHandle::abort_locked() noexcept {
  if (comm) ncclCommAbort(comm);
  comm = nullptr;
}

NcclDomain::~NcclDomain() {
  {
    std::lock_guard lk(mu);
    stop_ = true;
  }
  cv_.notify_all();
  if (watchdog_.joinable()) watchdog_.join();
  for (const NcclPending& p : pending_) cudaEventDestroy(p.done);
}

void NcclDomain::fail(Status s) {
  std::lock_guard lk(mu);
  if (failure.ok()) failure = std::move(s);
  failed = true;
}

void NcclDomain::fail_and_abort(Status s) {
  fail(std::move(s));
  abort_handles();
}

void NcclDomain::abort_handles() {
  std::vector<std::shared_ptr<NcclHandle>> live;
  {
    std::lock_guard lk(mu);
    handles_aborted_ = true;
    for (const auto& w : handles_)
      if (auto h = w.lock()) live.push_back(std::move(h));
  }
  // The failure is recorded first: a rank holding a handle's lock sees it before it issues anything more.
  for (const auto& h : live) {
    std::lock_guard lk(h->mu);
    h->abort_locked();
  }
}

void NcclDomain::wake() {
  {
    std::lock_guard lk(mu);
    if (!watchdog_.joinable()) watchdog_ = std::thread([this] { watchdog_loop(); });
  }
  cv_.notify_all();
}

void NcclDomain::add(const std::shared_ptr<NcclHandle>& h) {
  std::lock_guard lk(mu);
  std::erase_if(handles_, [](const std::weak_ptr<NcclHandle>& w) { return w.expired(); });
  handles_.push_back(h);
}

void NcclDomain::watch(NcclPending p) {
  {
    std::lock_guard lk(mu);
    pending_.push_back(std::move(p));
    if (!watchdog_.joinable()) watchdog_ = std::thread([this] { watchdog_loop(); });
  }
  cv_.notify_all();
}

bool NcclDomain::busy(int device) {
  std::lock_guard lk(mu);
  for (const NcclPending& p : pending_)
    if (p.device == device) return true;
  return false;
}

void NcclDomain::watchdog_loop() {
  std::unique_lock lk(mu);
  while (!stop_) {
    // A failure recorded elsewhere (a rank's abort()): free whatever waits on a peer that will not come.
    if (failed && !handles_aborted_) {
      lk.unlock();
      abort_handles();
      lk.lock();
      continue;
    }
    if (pending_.empty()) {
      cv_.wait(lk, [&] { return stop_ || !pending_.empty() || (failed && !handles_aborted_); });
      continue;
    }
    // Completed work leaves the list; the first failure or overdue transfer fails the domain. Events are polled
    // in issue order, but any of them may complete first (they run on different streams).
    Status failure;
    const auto now = std::chrono::steady_clock::now();
    for (auto it = pending_.begin(); it != pending_.end();) {
      const cudaError_t e = cudaEventQuery(it->done);
      if (e == cudaSuccess) {
        cudaEventDestroy(it->done);
        it = pending_.erase(it);
        continue;
      }
      if (e != cudaErrorNotReady && failure.ok())
        failure = Status(StatusCode::kUnavailable, detail::concat("a transfer on cuda:", it->device,
                                                                  " failed: ", cudaGetErrorString(e)));
      else if (now > it->deadline && failure.ok())
        failure = Status(StatusCode::kTimeout, it->timeout_message());
      ++it;
    }
    if (!failure.ok() && !failed) {
      lk.unlock();
      fail_and_abort(std::move(failure));
      lk.lock();
      continue;  // the aborted transfers complete now (or soon): keep draining
    }
    lk.unlock();
    std::this_thread::sleep_for(std::chrono::microseconds(200));
    lk.lock();
  }
}

Status NcclDomain::status() {
  std::lock_guard lk(mu);
  return failure;
}

void NcclDomain::enter(const std::string& group, int size, int rank, uint64_t seq) {
  std::lock_guard lk(mu);
  auto& v = entered[group];
  if (v.empty()) v.assign(size, 0);
  v[rank] = seq;
}

std::vector<int> NcclDomain::behind(const std::string& group, uint64_t seq) {
  std::lock_guard lk(mu);
  std::vector<int> late;
  const auto& v = entered[group];
  for (size_t r = 0; r < v.size(); ++r)
    if (v[r] < seq) late.push_back(int(r));
  return late;
}

Staged Staged::for_send(Backend& be, const Tensor& t) {
  if (t.is_contiguous()) return {t, t};
  Tensor packed = be.empty(t.shape(), t.dtype());
  be.copy(packed, t);
  return {t, packed};
}

Staged Staged::for_recv(Backend& be, const Tensor& t) {
  if (t.is_contiguous()) return {t, t};
  return {t, be.empty(t.shape(), t.dtype())};
}

void Staged::unpack(Backend& be) const {
  if (buffer.storage() != user.storage()) be.copy(user, buffer);
}

// ---- Requests ----

class NcclRequest final : public CommRequest {
 public:
  NcclRequest(NcclCommunicator& comm, Backend& be, Clock::time_point deadline, std::vector<Staged> sends,
              std::vector<Staged> recvs, std::string timeout_message)
      : comm_(comm),
        be_(be),
        deadline_(deadline),
        sends_(std::move(sends)),
        recvs_(std::move(recvs)),
        timeout_message_(std::move(timeout_message)) {}

  ~NcclRequest() override {
    // The backend's later work may reuse these buffers: it must wait for the transfers first.
    if (!complete_) {
      const Status s = capture([&] { wait(); });
      if (!s.ok()) PD_LOG(kWarn, "a send/recv batch dropped without wait() ended with ", s.to_string());
    }
  }

  // In stream order: the backend's stream waits for the transfers, the host does not. The buffers may then be
  // released, since everything the backend does with their memory afterwards runs after the transfers.
  void wait() override {
    if (complete_) return;
    complete_ = true;
    comm_.join_compute(deadline_, [m = timeout_message_] { return m; });
    for (const Staged& r : recvs_) r.unpack(be_);
  }

 private:
  NcclCommunicator& comm_;
  Backend& be_;
  Clock::time_point deadline_;
  std::vector<Staged> sends_, recvs_;  // kept alive until the backend's stream is behind the transfers
  std::string timeout_message_;
  bool complete_ = false;
};

// ---- Communicator ----

NcclCommunicator::NcclCommunicator(Backend& be, ncclComm_t comm, std::shared_ptr<NcclDomain> domain,
                                   std::string group_id, std::string name, std::vector<int> members, int rank)
    : be_(be),
      handle_(std::make_shared<NcclHandle>()),
      comm_(comm),
      domain_(std::move(domain)),
      group_id_(std::move(group_id)),
      name_(std::move(name)),
      members_(std::move(members)),
      rank_(rank) {
  handle_->comm = comm;
  const Status s = capture([&] {
    auto* cuda = dynamic_cast<CudaBackend*>(&be_);
    PD_REQUIRE(cuda != nullptr, "NCCL communicator on ", be_.name(), ": a CUDA backend is needed");
    compute_ = static_cast<cudaStream_t>(cuda->stream());
    std::lock_guard lk(handle_->mu);
    check_cuda(cudaSetDevice(be_.device().index), "cudaSetDevice");
    check_cuda(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
    scratch_ = be_.empty({1}, DType::kF32);
  });
  if (!s.ok()) {  // the destructor will not run
    handle_->abort_locked();
    if (stream_) cudaStreamDestroy(stream_);
    throw Error(s);
  }
  domain_->add(handle_);
}

NcclCommunicator::~NcclCommunicator() {
  cudaSetDevice(be_.device().index);
  // Transfers still running would use the stream and buffers freed below: wait for them (the watchdog fails them
  // at their deadline, and aborting drains them).
  if (stream_) cudaStreamSynchronize(stream_);
  // ncclCommFinalize/ncclCommDestroy wait for the peers, and would hang here if one is gone; aborting only frees
  // the resources.
  {
    std::lock_guard lk(handle_->mu);
    handle_->abort_locked();
  }
  if (stream_) cudaStreamDestroy(stream_);
}

void NcclCommunicator::throw_if_failed() {
  if (!domain_->failed) return;
  handle_->abort_locked();
  comm_ = nullptr;
  throw Error(domain_->status());
}

void NcclCommunicator::fail(Status s) {
  domain_->fail(std::move(s));
  handle_->abort_locked();
  comm_ = nullptr;
  throw Error(domain_->status());
}

void NcclCommunicator::check(ncclResult_t r, const char* call) {
  if (r == ncclSuccess || r == ncclInProgress) return;
  fail(Status(StatusCode::kUnavailable,
              detail::concat(call, " on group ", describe(), ", ", ranks_str(members_, {rank_}), ": ",
                             ncclGetErrorString(r), " (", ncclGetLastError(comm_), ")")));
}

void NcclCommunicator::check_cuda(cudaError_t e, const char* call) {
  if (e == cudaSuccess) return;
  fail(Status(StatusCode::kUnavailable, detail::concat(call, " on group ", describe(), ", ",
                                                       ranks_str(members_, {rank_}), ": ", cudaGetErrorString(e))));
}

void NcclCommunicator::require_device(const Tensor& t, const char* op) const {
  PD_REQUIRE(t.defined() && t.device() == be_.device(), op, ": expected a tensor on ", be_.device().str(), ", got ",
             t.defined() ? t.desc() : std::string("an undefined tensor"));
}

void NcclCommunicator::watch(Clock::time_point deadline, const std::function<bool()>& done,
                             const std::function<std::string()>& timeout_message) {
  for (int polls = 0;; ++polls) {
    throw_if_failed();
    if (done()) return;
    ncclResult_t async = ncclSuccess;
    check(ncclCommGetAsyncError(comm_, &async), "ncclCommGetAsyncError");
    check(async, "NCCL (asynchronous error)");
    if (Clock::now() > deadline) fail(Status(StatusCode::kTimeout, timeout_message()));
    // Most transfers finish within microseconds: spin a little, then sleep to leave the core to the workers.
    if (polls < 100) {
      std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }
}

void NcclCommunicator::issue_group(Clock::time_point deadline, const std::function<void(FirstError&)>& issue,
                                   const std::function<std::string()>& timeout_message) {
  throw_if_failed();
  check_cuda(cudaSetDevice(be_.device().index), "cudaSetDevice");
  // NCCL runs on stream_, the backend on its own: stream_ waits (on the GPU) for the backend's queued work.
  cudaEvent_t inputs = nullptr;
  check_cuda(cudaEventCreateWithFlags(&inputs, cudaEventDisableTiming), "cudaEventCreateWithFlags");
  cudaError_t e = cudaEventRecord(inputs, compute_);
  if (e == cudaSuccess) e = cudaStreamWaitEvent(stream_, inputs, 0);
  cudaEventDestroy(inputs);  // released once the wait is done
  check_cuda(e, "cudaEventRecord/cudaStreamWaitEvent");
  check(ncclGroupStart(), "ncclGroupStart");
  FirstError first;
  issue(first);
  check(ncclGroupEnd(), "ncclGroupEnd");
  check(first.result, "NCCL call");
  watch(
      deadline,
      [&] {
        ncclResult_t state = ncclSuccess;
        check(ncclCommGetAsyncError(comm_, &state), "ncclCommGetAsyncError");
        return state != ncclInProgress;
      },
      timeout_message);
}

std::function<std::string()> NcclCommunicator::timeout_message(const std::string& op, uint64_t seq) const {
  // The watchdog may call it after this communicator is gone: everything is captured by value.
  return [domain = domain_, group = group_id_, members = members_, rank = rank_, t = timeout(), op, seq,
          name = describe()] {
    const std::vector<int> late = domain->behind(group, seq);
    const std::string who = late.empty()
                                ? std::string("every rank arrived but NCCL did not complete (a stalled link?)")
                                : ranks_str(members, late) + " did not arrive";
    return detail::concat(op, " (call #", seq - 1, ") on group ", name, " timed out after ", seconds_str(t), ": ",
                          who, "; ", ranks_str(members, {rank}), " gave up waiting");
  };
}

void NcclCommunicator::join_compute(Clock::time_point deadline, std::function<std::string()> message) {
  std::lock_guard lk(handle_->mu);
  throw_if_failed();
  check_cuda(cudaSetDevice(be_.device().index), "cudaSetDevice");
  cudaEvent_t done = nullptr;
  check_cuda(cudaEventCreateWithFlags(&done, cudaEventDisableTiming), "cudaEventCreateWithFlags");
  cudaError_t e = cudaEventRecord(done, stream_);
  if (e == cudaSuccess) e = cudaStreamWaitEvent(compute_, done, 0);
  if (e != cudaSuccess) {
    cudaEventDestroy(done);
    check_cuda(e, "cudaEventRecord/cudaStreamWaitEvent");
  }
  domain_->watch({done, be_.device().index, deadline, std::move(message)});
}

void NcclCommunicator::collective(const std::string& op, const std::function<void(FirstError&)>& issue) {
  const uint64_t seq = ++seq_;
  domain_->enter(group_id_, size(), rank_, seq);
  const auto deadline = Clock::now() + timeout();
  const std::function<std::string()> message = timeout_message(op, seq);
  {
    std::lock_guard lk(handle_->mu);
    issue_group(deadline, issue, message);
  }
  join_compute(deadline, message);
}

void NcclCommunicator::wait_all() {
  const auto deadline = Clock::now() + timeout();
  for (int polls = 0; domain_->busy(be_.device().index); ++polls) {
    if (domain_->failed) break;
    // The watchdog fails overdue transfers itself; this deadline only guards against a watchdog that stalled.
    if (Clock::now() > deadline) {
      domain_->fail_and_abort(Status(StatusCode::kTimeout, detail::concat("transfers on group ", describe(),
                                                                         " still running after ",
                                                                         seconds_str(timeout()))));
      break;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(polls < 100 ? 20 : 200));
  }
  std::lock_guard lk(handle_->mu);
  throw_if_failed();
}

std::unique_ptr<CommRequest> NcclCommunicator::start(std::vector<P2POp> ops) {
  std::vector<Staged> sends, recvs;
  std::vector<int> peers;
  for (const P2POp& op : ops) {
    PD_REQUIRE(op.peer >= 0 && op.peer < size(), "send/recv: peer ", op.peer, " out of range for group ", describe());
    require_device(op.tensor, "send/recv");
    const bool send = op.kind == P2POp::Kind::kSend;
    (send ? sends : recvs).push_back(send ? Staged::for_send(be_, op.tensor) : Staged::for_recv(be_, op.tensor));
    if (std::find(peers.begin(), peers.end(), op.peer) == peers.end()) peers.push_back(op.peer);
  }
  const auto deadline = Clock::now() + timeout();
  const std::string message =
      detail::concat("send/recv with ", ranks_str(members_, peers), " on group ", describe(), " timed out after ",
                     seconds_str(timeout()), ": a peer did not post its side, or NCCL stalled; ",
                     ranks_str(members_, {rank_}), " gave up waiting");
  // Posted as one group, in the order given, so that NCCL matches them pairwise without deadlock.
  std::lock_guard lk(handle_->mu);
  issue_group(
      deadline,
      [&](FirstError& e) {
        size_t si = 0, ri = 0;
        for (const P2POp& op : ops) {
          const bool send = op.kind == P2POp::Kind::kSend;
          const Staged& x = send ? sends[si++] : recvs[ri++];
          if (!x.bytes()) continue;
          e(send ? ncclSend(x.ptr(), x.bytes(), ncclUint8, op.peer, comm_, stream_)
                 : ncclRecv(x.ptr(), x.bytes(), ncclUint8, op.peer, comm_, stream_));
        }
      },
      [&] { return message; });
  return std::make_unique<NcclRequest>(*this, be_, deadline, std::move(sends), std::move(recvs), message);
}

std::unique_ptr<Communicator> NcclCommunicator::split(int color, int key, const std::string& name) {
  constexpr int kExact = 1 << 24;  // colors and keys travel as f32 below
  PD_REQUIRE(color < kExact && key > -kExact && key < kExact, "split: color ", color, " and key ", key,
             " must be below 2^24 in magnitude");
  // Every rank's (color, key), so that each can name the members of its new group.
  Tensor mine = Tensor::empty({1, 2}, DType::kF32, cpu_allocator());
  mine.data_as<float>()[0] = float(std::max(color, -1));
  mine.data_as<float>()[1] = float(key);
  const Tensor all = be_.empty({size(), 2}, DType::kF32);
  all_gather(all, be_.upload(mine, DType::kF32));
  const Tensor table = be_.download_f32(all);
  std::vector<std::pair<int, int>> ranks;  // (key, parent rank) of this rank's new group
  for (int p = 0; p < size() && color >= 0; ++p)
    if (int(table.data_as<float>()[2 * p]) == color) ranks.emplace_back(int(table.data_as<float>()[2 * p + 1]), p);
  std::sort(ranks.begin(), ranks.end());
  std::vector<int> members;
  int new_rank = -1;
  for (auto& [k, p] : ranks) {
    if (p == rank_) new_rank = int(members.size());
    members.push_back(members_[p]);
  }

  const uint64_t seq = ++seq_;
  domain_->enter(group_id_, size(), rank_, seq);
  const auto deadline = Clock::now() + timeout();
  std::lock_guard lk(handle_->mu);
  throw_if_failed();
  check_cuda(cudaSetDevice(be_.device().index), "cudaSetDevice");
  ChildComm child;
  ncclConfig_t config = nonblocking_config();
  check(ncclCommSplit(comm_, color < 0 ? NCCL_SPLIT_NOCOLOR : color, key, &child.comm, &config), "ncclCommSplit");
  watch(
      deadline,
      [&] {
        ncclResult_t parent = ncclSuccess, state = ncclSuccess;
        check(ncclCommGetAsyncError(comm_, &parent), "ncclCommGetAsyncError");
        if (child.comm) {
          const ncclResult_t r = ncclCommGetAsyncError(child.comm, &state);
          check(r != ncclSuccess ? r : state, "ncclCommSplit (new communicator)");
        }
        return parent != ncclInProgress && state != ncclInProgress;
      },
      timeout_message("split", seq));
  if (color < 0) return nullptr;
  PD_CHECK(child.comm != nullptr && new_rank >= 0, "ncclCommSplit gave no communicator for color ", color);
  auto comm = std::make_unique<NcclCommunicator>(be_, std::exchange(child.comm, nullptr), domain_,
                                                 group_id_ + "/" + name + ":" + std::to_string(color), name,
                                                 std::move(members), new_rank);
  comm->set_timeout(timeout());
  return comm;
}

void NcclCommunicator::abort(const std::string& reason) noexcept {
  // Marks the family failed and wakes the watchdog, which aborts every NCCL communicator of it (so that ranks
  // whose streams wait on a transfer this rank will never join are freed); each rank's next call throws.
  try {
    domain_->fail(Status(StatusCode::kCancelled, detail::concat("rank ", world_rank(), " failed: ", reason)));
    domain_->wake();
  } catch (...) {
    // Allocation failed while building the message, or no thread could be started: the deadlines still apply.
  }
}

}  // namespace paradit::detail

#endif
