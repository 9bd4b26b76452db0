#include "comm/nccl/nccl_communicator.h"

#if PARADIT_HAS_NCCL

#include <algorithm>
#include <cstdlib>
#include <string>
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

void NcclDomain::fail(Status s) {
  std::lock_guard lk(mu);
  if (failure.ok()) failure = std::move(s);
  failed = true;
}

NcclInFlight::~NcclInFlight() {
  for (const Transfer& t : transfers) cudaEventDestroy(t.done);
  for (cudaEvent_t e : spare) cudaEventDestroy(e);
}

cudaEvent_t NcclInFlight::take_event() {
  if (!spare.empty()) {
    cudaEvent_t e = spare.back();
    spare.pop_back();
    return e;
  }
  cudaEvent_t e = nullptr;
  const cudaError_t err = cudaEventCreateWithFlags(&e, cudaEventDisableTiming);
  PD_REQUIRE(err == cudaSuccess, "cudaEventCreateWithFlags: ", cudaGetErrorString(err));
  return e;
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

void wait_dropped(CommRequest& request) noexcept {
  const Status s = capture([&] { request.wait(); });
  if (!s.ok()) PD_LOG(kWarn, "a send/recv batch dropped without wait() ended with ", s.to_string());
}

// The batch's transfers run on the communicator's stream; `done` is recorded right after them. Synchronous,
// wait() polls it. Stream-ordered (as the communicator was when the batch started; the rank's in-flight list
// then also times the batch from the start), wait() puts the backend's stream behind it — the buffers may then
// go, since whatever the backend does with their memory afterwards runs after the transfers.
class NcclRequest final : public CommRequest {
 public:
  NcclRequest(NcclCommunicator& comm, Backend& be, Clock::time_point deadline, cudaEvent_t done, bool stream_ordered,
              std::vector<Staged> sends, std::vector<Staged> recvs, std::string timeout_message)
      : comm_(comm),
        be_(be),
        deadline_(deadline),
        done_(done),
        stream_ordered_(stream_ordered),
        sends_(std::move(sends)),
        recvs_(std::move(recvs)),
        timeout_message_(std::move(timeout_message)) {}

  ~NcclRequest() override {
    if (!complete_) wait_dropped(*this);
  }

  void wait() override {
    if (complete_) return;
    complete_ = true;
    if (stream_ordered_) {
      comm_.join_compute(done_);  // returns the event to the pool
    } else {
      comm_.in_flight_->spare.push_back(done_);  // not recorded again before the poll below ends
      comm_.watch_event(done_, deadline_, [this] { return timeout_message_; });
    }
    for (const Staged& r : recvs_) r.unpack(be_);
  }

 private:
  NcclCommunicator& comm_;
  Backend& be_;
  Clock::time_point deadline_;
  cudaEvent_t done_;  // from the rank's pool, recorded after the batch
  bool stream_ordered_;
  std::vector<Staged> sends_, recvs_;  // kept alive until the transfers are complete (or the stream is behind them)
  std::string timeout_message_;
  bool complete_ = false;
};

// ---- Communicator ----

NcclCommunicator::NcclCommunicator(Backend& be, ncclComm_t comm, std::shared_ptr<NcclDomain> domain,
                                   std::string group_id, std::string name, std::vector<int> members, int rank,
                                   std::shared_ptr<NcclInFlight> in_flight)
    : be_(be),
      comm_(comm),
      domain_(std::move(domain)),
      in_flight_(in_flight ? std::move(in_flight) : std::make_shared<NcclInFlight>()),
      group_id_(std::move(group_id)),
      name_(std::move(name)),
      members_(std::move(members)),
      rank_(rank) {
  const Status s = capture([&] {
    CudaBackend* cuda = as_cuda_backend(be_);
    PD_REQUIRE(cuda != nullptr, "NCCL communicator on ", be_.name(), ": a CUDA backend is needed");
    compute_ = static_cast<cudaStream_t>(cuda->stream());
    check_cuda(cudaSetDevice(be_.device().index), "cudaSetDevice");
    // The highest priority: when a transfer and a compute kernel become ready together (Ring's next K/V beside
    // an attention block, a single block's q/k/v beside its MLP GEMM), the block scheduler gives NCCL's few
    // CTAs their SMs first; a GEMM or attention kernel that fills every SM would otherwise hold the transfer
    // back until it ends, and nothing would overlap. Measured on 4 × H200 (2048², Ulysses 4) it changes a step by
    // under 1% (190.6 against 191.4 ms); kept, as it costs nothing. PARADIT_NCCL_STREAM_PRIORITY=normal gives it
    // the default priority instead.
    int least = 0, greatest = 0;
    check_cuda(cudaDeviceGetStreamPriorityRange(&least, &greatest), "cudaDeviceGetStreamPriorityRange");
    const char* priority = std::getenv("PARADIT_NCCL_STREAM_PRIORITY");
    const bool normal = priority != nullptr && std::string(priority) == "normal";
    check_cuda(cudaStreamCreateWithPriority(&stream_, cudaStreamNonBlocking, normal ? least : greatest),
               "cudaStreamCreateWithPriority");
    check_cuda(cudaEventCreateWithFlags(&inputs_ready_, cudaEventDisableTiming), "cudaEventCreateWithFlags");
    scratch_ = be_.empty({1}, DType::kF32);
  });
  if (!s.ok()) {  // the destructor will not run
    abort_nccl();
    if (inputs_ready_) cudaEventDestroy(inputs_ready_);
    if (stream_) cudaStreamDestroy(stream_);
    throw Error(s);
  }
  in_flight_->comms.push_back(this);
}

NcclCommunicator::~NcclCommunicator() {
  std::erase(in_flight_->comms, this);
  cudaSetDevice(be_.device().index);
  // Transfers of this rank still queued (a failed request's) would use the stream freed below: aborting first
  // ends any that wait on a peer, then the stream drains. ncclCommFinalize/ncclCommDestroy would wait for the
  // peers, and hang here if one is gone; aborting only frees the resources.
  abort_nccl();
  if (stream_) {
    cudaStreamSynchronize(stream_);
    cudaStreamDestroy(stream_);
  }
  if (inputs_ready_) cudaEventDestroy(inputs_ready_);
  for (cudaStream_t s : peer_streams_) {
    if (!s) continue;
    cudaStreamSynchronize(s);
    cudaStreamDestroy(s);
  }
}

void NcclCommunicator::abort_nccl() noexcept {
  if (comm_) ncclCommAbort(comm_);
  comm_ = nullptr;
}

void NcclCommunicator::abort_rank() noexcept {
  // Every communicator of this rank: a stream-ordered transfer of any of them may be what the stream waits on.
  for (NcclCommunicator* c : in_flight_->comms) c->abort_nccl();
  abort_nccl();
}

void NcclCommunicator::fail(Status s) {
  domain_->fail(std::move(s));
  abort_rank();
  throw Error(domain_->status());
}

void NcclCommunicator::throw_if_failed() {
  if (!domain_->failed) return;
  abort_rank();
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

void NcclCommunicator::watch_event(cudaEvent_t e, Clock::time_point deadline,
                                   const std::function<std::string()>& timeout_message) {
  watch(
      deadline,
      [&] {
        const cudaError_t r = cudaEventQuery(e);
        if (r == cudaErrorNotReady) return false;
        check_cuda(r, "cudaEventQuery");
        return true;
      },
      timeout_message);
}

void NcclCommunicator::issue_group(Clock::time_point deadline, const std::function<void(FirstError&)>& issue,
                                   const std::function<std::string()>& timeout_message) {
  throw_if_failed();
  check_cuda(cudaSetDevice(be_.device().index), "cudaSetDevice");
  if (in_flight_->stream_ordered) {
    // Bounded run-ahead: the oldest transfers must be done before another is queued.
    retire(kMaxInFlight - 1);
    check_cuda(cudaEventRecord(inputs_ready_, compute_), "cudaEventRecord");
    check_cuda(cudaStreamWaitEvent(stream_, inputs_ready_, 0), "cudaStreamWaitEvent");
  } else {
    be_.synchronize();
  }
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

std::function<std::string()> NcclCommunicator::collective_timeout(const std::string& op, uint64_t seq) const {
  return [domain = domain_, group = group_id_, members = members_, rank = rank_, t = timeout(), name = describe(), op,
          seq] {
    const std::vector<int> late = domain->behind(group, seq);
    const std::string who = late.empty()
                                ? std::string("every rank arrived but NCCL did not complete (a stalled link?)")
                                : ranks_str(members, late) + " did not arrive";
    return detail::concat(op, " (call #", seq - 1, ") on group ", name, " timed out after ", seconds_str(t), ": ",
                          who, "; ", ranks_str(members, {rank}), " gave up waiting");
  };
}

cudaEvent_t NcclCommunicator::record_after_issued() {
  cudaEvent_t e = in_flight_->take_event();
  const cudaError_t r = cudaEventRecord(e, stream_);
  if (r != cudaSuccess) in_flight_->spare.push_back(e);
  check_cuda(r, "cudaEventRecord");
  return e;
}

void NcclCommunicator::track(Clock::time_point deadline, std::function<std::string()> timeout_message) {
  in_flight_->transfers.push_back({record_after_issued(), deadline, std::move(timeout_message)});
}

void NcclCommunicator::join_compute(cudaEvent_t done) {
  check_cuda(cudaSetDevice(be_.device().index), "cudaSetDevice");
  // The wait takes the event as recorded now: it may be recorded again for later work at once.
  const cudaError_t e = cudaStreamWaitEvent(compute_, done, 0);
  in_flight_->spare.push_back(done);
  check_cuda(e, "cudaStreamWaitEvent");
}

void NcclCommunicator::retire(size_t keep) {
  auto& transfers = in_flight_->transfers;
  while (transfers.size() > keep) {
    NcclInFlight::Transfer& t = transfers.front();
    watch_event(t.done, t.deadline, t.timeout_message);
    in_flight_->spare.push_back(t.done);
    transfers.pop_front();
  }
}

void NcclCommunicator::set_stream_ordered(bool on) {
  if (on || !in_flight_->stream_ordered) {
    in_flight_->stream_ordered = on;
    return;
  }
  // Synchronous again even if waiting fails: the failure then stands for every later call anyway.
  struct Off {
    NcclInFlight& f;
    ~Off() { f.stream_ordered = false; }
  } off{*in_flight_};
  wait_all();
}

void NcclCommunicator::wait_all() {
  throw_if_failed();
  check_cuda(cudaSetDevice(be_.device().index), "cudaSetDevice");
  // The transfers first, each with its own deadline and a timeout message that names the late ranks; then the
  // backend's work queued behind them.
  retire(0);
  const std::string message =
      detail::concat("waiting for the queued work of ", ranks_str(members_, {rank_}), " (group ", describe(),
                     ") timed out after ", seconds_str(timeout()), ": a transfer in flight never completed");
  wait_queue(compute_, Clock::now() + timeout(), [&] { return message; });
}

void NcclCommunicator::collective(const std::string& op, const std::function<void(FirstError&)>& issue) {
  const uint64_t seq = ++seq_;
  domain_->enter(group_id_, size(), rank_, seq);
  const auto deadline = Clock::now() + timeout();
  std::function<std::string()> message = collective_timeout(op, seq);
  issue_group(deadline, issue, message);
  if (in_flight_->stream_ordered) {
    track(deadline, std::move(message));
    // The backend's stream waits on the tracked event itself: it is recorded again only after it is retired.
    check_cuda(cudaStreamWaitEvent(compute_, in_flight_->transfers.back().done, 0), "cudaStreamWaitEvent");
    return;
  }
  wait_queue(stream_, deadline, message);
}

void NcclCommunicator::wait_queue(cudaStream_t stream, Clock::time_point deadline,
                                  const std::function<std::string()>& timeout_message) {
  check_cuda(cudaSetDevice(be_.device().index), "cudaSetDevice");
  cudaEvent_t done = in_flight_->take_event();
  const cudaError_t e = cudaEventRecord(done, stream);
  in_flight_->spare.push_back(done);  // reusable at once: a wait sees the record made before it
  check_cuda(e, "cudaEventRecord");
  watch_event(done, deadline, timeout_message);
}

std::unique_ptr<CommRequest> NcclCommunicator::start(std::vector<P2POp> ops) {
  std::vector<int> peers;
  for (const P2POp& op : ops) {
    PD_REQUIRE(op.peer >= 0 && op.peer < size(), "send/recv: peer ", op.peer, " out of range for group ", describe());
    require_device(op.tensor, "send/recv");
    if (std::find(peers.begin(), peers.end(), op.peer) == peers.end()) peers.push_back(op.peer);
  }
  const auto deadline = Clock::now() + timeout();
  const std::string message =
      detail::concat("send/recv with ", ranks_str(members_, peers), " on group ", describe(), " timed out after ",
                     seconds_str(timeout()), ": a peer did not post its side, or the transfer stalled; ",
                     ranks_str(members_, {rank_}), " gave up waiting");
  if (domain_->peer_copy) return start_on_copy_engines(std::move(ops), deadline, message);
  std::vector<Staged> sends, recvs;
  for (const P2POp& op : ops) {
    const bool send = op.kind == P2POp::Kind::kSend;
    (send ? sends : recvs).push_back(send ? Staged::for_send(be_, op.tensor) : Staged::for_recv(be_, op.tensor));
  }
  // Posted as one group, in the order given, so that NCCL matches them pairwise without deadlock.
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
  // Stream-ordered, timed and counted from now, not from wait(): a batch waited for much later (patch
  // parallel's, a step later) still bounds how far this rank runs ahead.
  if (in_flight_->stream_ordered) track(deadline, [message] { return message; });
  return std::make_unique<NcclRequest>(*this, be_, deadline, record_after_issued(), in_flight_->stream_ordered,
                                       std::move(sends), std::move(recvs), message);
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
      collective_timeout("split", seq));
  if (color < 0) return nullptr;
  PD_CHECK(child.comm != nullptr && new_rank >= 0, "ncclCommSplit gave no communicator for color ", color);
  auto comm = std::make_unique<NcclCommunicator>(be_, std::exchange(child.comm, nullptr), domain_,
                                                 group_id_ + "/" + name + ":" + std::to_string(color), name,
                                                 std::move(members), new_rank, in_flight_);
  comm->set_timeout(timeout());
  return comm;
}

void NcclCommunicator::abort(const std::string& reason) noexcept {
  // Only marks the family failed: every rank's watchdog (this one's included, at its next call) then aborts its
  // own NCCL communicator from its own thread.
  try {
    domain_->fail(Status(StatusCode::kCancelled, detail::concat("rank ", world_rank(), " failed: ", reason)));
  } catch (...) {
    // Allocation failed while building the message: nothing more can be done without memory.
  }
}

}  // namespace paradit::detail

#endif
