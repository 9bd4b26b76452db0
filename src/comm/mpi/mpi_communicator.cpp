// The MPI transport's collectives, split, abort and world creation. Every collective is point-to-point messages
// between the members (nonblocking, polled by wait_messages against the timeout); sums run in rank order on every
// rank, so all get the same bits, in f32 as the in-process transport does.
#if defined(PARADIT_WITH_MPI)

#include "comm/mpi/mpi_communicator.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <numeric>
#include <thread>
#include <tuple>

#include "comm/comm_text.h"
#include "comm/host_checks.h"
#include "comm/host_copy.h"
#include "comm/mpi/mpi_util.h"
#include "paradit/comm/mpi.h"
#include "paradit/core/allocator.h"

namespace paradit::detail {

namespace {

constexpr const char* kTransport = "MPI";

// Collective tags: a rank that calls another collective than its peers times out naming both.
enum Tag : int { kAllToAll = 1, kAllGather, kReduceScatter, kAllReduce, kBroadcast, kBarrier, kSplit };

void require_host(const Tensor& t, const char* op) { detail::require_host(t, op, kTransport); }

void require_list(std::span<const Tensor> list, int size, const char* op, const char* what) {
  detail::require_list(list, size, op, what, kTransport);
}

// A byte buffer as a tensor of one-byte elements: the transport moves bytes as they are.
Tensor bytes_view(void* data, size_t n) { return Tensor::borrow(data, {int64_t(n)}, DType::kF8E4M3, Device::cpu()); }

// Sums the pieces in rank order into recv, through f32.
void sum_into(const Tensor& recv, const std::vector<Tensor>& pieces) {
  std::vector<float> acc(size_t(recv.numel()), 0.0f);
  for (const Tensor& p : pieces) host_accumulate(acc.data(), p);
  host_store(recv, acc.data());
}

// Polls a nonblocking MPI operation without a Message (communicator duplication) until done or the deadline.
void wait_request(MPI_Request& req, MpiFamily* family, std::chrono::steady_clock::time_point deadline,
                  const std::string& what, std::chrono::milliseconds timeout) {
  for (;;) {
    int done = 0;
    mpi_check(MPI_Test(&req, &done, MPI_STATUS_IGNORE), what.c_str());
    if (done) return;
    if (family) family->throw_if_failed();
    // A nonblocking collective may not be freed: on a timeout its request is left to MPI.
    if (std::chrono::steady_clock::now() > deadline) {
      const Status s(StatusCode::kTimeout, concat(what, " timed out after ", seconds_str(timeout),
                                                  ": not every process of the group took part"));
      if (family) family->fail_and_throw(s);
      throw Error(s);
    }
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
}

MPI_Comm duplicate(MPI_Comm comm, MpiFamily* family, std::chrono::milliseconds timeout, const std::string& what) {
  MPI_Comm dup = MPI_COMM_NULL;
  MPI_Request req = MPI_REQUEST_NULL;
  mpi_check(MPI_Comm_idup(comm, &dup, &req), "MPI_Comm_idup");
  wait_request(req, family, std::chrono::steady_clock::now() + timeout, what, timeout);
  return dup;
}

}  // namespace

MpiCommunicator::MpiCommunicator(std::shared_ptr<MpiGroup> group) : group_(std::move(group)) {}

std::vector<Tensor> MpiCommunicator::exchange(const char* op, int tag, const std::vector<Tensor>& to,
                                              const std::vector<Tensor>& from) {
  MpiGroup& g = *group_;
  const int n = size(), me = rank();
  const auto deadline = std::chrono::steady_clock::now() + timeout();
  g.family->throw_if_failed();
  const std::string what = concat(op, " (call #", g.calls++, ") on group ", describe());
  std::vector<Message> msgs;
  for (int p = 0; p < n; ++p)
    if (p != me && from[size_t(p)].defined()) msgs.push_back(Message::of(false, p, from[size_t(p)]));
  for (int p = 0; p < n; ++p)
    if (p != me && to[size_t(p)].defined()) msgs.push_back(Message::of(true, p, to[size_t(p)]));
  std::vector<Tensor> got(static_cast<size_t>(n));
  try {
    for (Message& m : msgs) post(g, m, tag, what);
    const Tensor& own = to[size_t(me)];
    if (own.defined()) {
      got[size_t(me)] = Tensor::empty(own.shape(), own.dtype(), cpu_allocator());
      host_copy(got[size_t(me)], own);
    }
  } catch (...) {
    abandon(msgs);
    throw;
  }
  wait_messages(g, msgs, deadline, timeout(), what);
  for (const Message& m : msgs)
    if (!m.send) got[size_t(m.peer)] = buffer_view(m);
  return got;
}

void MpiCommunicator::all_to_all_v(std::span<const Tensor> recv, std::span<const Tensor> send) {
  const int n = size();
  require_list(recv, n, "all_to_all", "recv");
  require_list(send, n, "all_to_all", "send");
  for (int p = 0; p < n; ++p)
    PD_REQUIRE(p != rank() || (recv[size_t(p)].shape() == send[size_t(p)].shape() &&
                               recv[size_t(p)].dtype() == send[size_t(p)].dtype()),
               "all_to_all on group ", describe(), ": rank ", p, " sends itself ", type_str(send[size_t(p)]),
               " but expects ", type_str(recv[size_t(p)]));
  const auto got = exchange("all_to_all", kAllToAll, {send.begin(), send.end()}, {recv.begin(), recv.end()});
  for (int p = 0; p < n; ++p) host_copy(recv[size_t(p)], got[size_t(p)]);
}

void MpiCommunicator::all_gather_v(std::span<const Tensor> recv, const Tensor& send) {
  const int n = size();
  require_list(recv, n, "all_gather", "recv");
  require_host(send, "all_gather");
  PD_REQUIRE(recv[size_t(rank())].shape() == send.shape() && recv[size_t(rank())].dtype() == send.dtype(),
             "all_gather on group ", describe(), ": rank ", rank(), " contributes ", type_str(send),
             " but expects ", type_str(recv[size_t(rank())]), " from itself");
  const auto got = exchange("all_gather", kAllGather, std::vector<Tensor>(size_t(n), send), {recv.begin(), recv.end()});
  for (int p = 0; p < n; ++p) host_copy(recv[size_t(p)], got[size_t(p)]);
}

void MpiCommunicator::reduce_scatter_v(const Tensor& recv, std::span<const Tensor> send) {
  const int n = size();
  require_host(recv, "reduce_scatter");
  require_summable(recv, "reduce_scatter");
  require_list(send, n, "reduce_scatter", "send");
  for (const Tensor& s : send)
    PD_REQUIRE(s.dtype() == recv.dtype(), "reduce_scatter on group ", describe(), ": sends ", type_str(s),
               " but receives ", type_str(recv));
  PD_REQUIRE(send[size_t(rank())].shape() == recv.shape(), "reduce_scatter on group ", describe(), ": rank ",
             rank(), " contributes ", type_str(send[size_t(rank())]), " to itself but receives ", type_str(recv));
  sum_into(recv, exchange("reduce_scatter", kReduceScatter, {send.begin(), send.end()},
                          std::vector<Tensor>(size_t(n), recv)));
}

void MpiCommunicator::all_reduce(const Tensor& t) {
  require_host(t, "all_reduce");
  require_summable(t, "all_reduce");
  const std::vector<Tensor> all(size_t(size()), t);
  sum_into(t, exchange("all_reduce", kAllReduce, all, all));
}

void MpiCommunicator::broadcast(const Tensor& t, int root) {
  const int n = size();
  require_host(t, "broadcast");
  PD_REQUIRE(root >= 0 && root < n, "broadcast: root ", root, " out of range for group ", describe());
  std::vector<Tensor> to(static_cast<size_t>(n)), from(static_cast<size_t>(n));
  if (rank() == root) to.assign(size_t(n), t);
  else from[size_t(root)] = t;
  const auto got = exchange(concat("broadcast from rank ", root).c_str(), kBroadcast, to, from);
  if (rank() != root) host_copy(t, got[size_t(root)]);
}

void MpiCommunicator::barrier() {
  const std::vector<Tensor> none(size_t(size()), Tensor::empty({0}, DType::kF32, cpu_allocator()));
  exchange("barrier", kBarrier, none, none);
}

std::unique_ptr<Communicator> MpiCommunicator::split(int color, int key, const std::string& name) {
  MpiGroup& g = *group_;
  const int n = size();
  // Every rank learns every rank's (color, key), then all duplicate this group's MPI communicator (nonblocking,
  // so a missing rank times out); each new group uses the duplicate among its own members only, so groups of
  // different colors share it without their messages ever meeting.
  int mine[2] = {color, key};
  std::vector<std::array<int, 2>> all(static_cast<size_t>(n));
  std::vector<Tensor> from(static_cast<size_t>(n));
  for (int p = 0; p < n; ++p) from[size_t(p)] = bytes_view(all[size_t(p)].data(), sizeof mine);
  const auto got = exchange("split", kSplit, std::vector<Tensor>(size_t(n), bytes_view(mine, sizeof mine)), from);
  for (int p = 0; p < n; ++p) std::memcpy(all[size_t(p)].data(), got[size_t(p)].data(), sizeof mine);
  MPI_Comm dup = duplicate(g.comm, g.family.get(), timeout(), concat("split (MPI_Comm_idup) of group ", describe()));
  if (color < 0) {
    MPI_Comm_free(&dup);
    return nullptr;
  }
  std::vector<std::tuple<int, int>> ranks;  // (key, parent rank) of this color
  for (int p = 0; p < n; ++p)
    if (all[size_t(p)][0] == color) ranks.emplace_back(all[size_t(p)][1], p);
  std::sort(ranks.begin(), ranks.end());
  auto child = std::make_shared<MpiGroup>();
  child->family = g.family;
  child->comm = dup;
  child->name = name;
  for (auto& [k, p] : ranks) {
    if (p == rank()) child->rank = int(child->members.size());
    child->members.push_back(g.members[size_t(p)]);
    child->comm_ranks.push_back(g.comm_ranks[size_t(p)]);
  }
  auto comm = std::make_unique<MpiCommunicator>(std::move(child));
  comm->set_timeout(timeout());
  return comm;
}

void MpiCommunicator::abort(const std::string& reason) noexcept {
  try {
    group_->family->fail(Status(StatusCode::kCancelled, concat("rank ", world_rank(), " failed: ", reason)));
  } catch (...) {
    // Building the message failed (out of memory): nothing more can be done.
  }
}

}  // namespace paradit::detail

namespace paradit {

std::unique_ptr<Communicator> create_mpi_world() {
  const MpiProcess& proc = mpi_process();
  const auto timeout = default_comm_timeout();
  MPI_Comm data = detail::duplicate(MPI_COMM_WORLD, nullptr, timeout, "creating the MPI world (MPI_Comm_idup)");
  MPI_Comm ctrl = MPI_COMM_NULL;
  const Status s = capture(
      [&] { ctrl = detail::duplicate(MPI_COMM_WORLD, nullptr, timeout, "creating the MPI world (MPI_Comm_idup)"); });
  if (!s.ok()) {
    MPI_Comm_free(&data);
    throw Error(s);
  }
  auto g = std::make_shared<detail::MpiGroup>();
  g->comm = data;  // owned by g from here
  g->family = std::make_shared<detail::MpiFamily>(ctrl, proc.rank, proc.size);
  g->name = "world";
  g->members.resize(size_t(proc.size));
  std::iota(g->members.begin(), g->members.end(), 0);
  g->comm_ranks = g->members;
  g->rank = proc.rank;
  return std::make_unique<detail::MpiCommunicator>(std::move(g));
}

}  // namespace paradit

#endif
