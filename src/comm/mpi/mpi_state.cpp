#if defined(PARADIT_WITH_MPI)

#include "comm/mpi/mpi_state.h"

#include <climits>
#include <cstring>
#include <thread>

#include "comm/comm_text.h"
#include "comm/host_copy.h"
#include "comm/mpi/mpi_util.h"

namespace paradit::detail {

namespace {

constexpr int kFailureTag = 1;
constexpr size_t kMaxFailureMessage = 1 << 16;

bool mpi_finalised() {
  int f = 0;
  MPI_Finalized(&f);
  return f != 0;
}

// Buffers of requests given up on while MPI may still use them: kept until the process exits.
void park(std::shared_ptr<void> buffer) {
  static std::mutex mu;
  static auto* parked = new std::vector<std::shared_ptr<void>>;  // never freed: MPI may outlive static destructors
  std::lock_guard lk(mu);
  parked->push_back(std::move(buffer));
}

// Waits a little longer each time nothing has moved: the peers of CPU ranks share the machine's cores.
void back_off(int& idle) {
  if (++idle < 64) {
    std::this_thread::yield();
    return;
  }
  std::this_thread::sleep_for(std::chrono::microseconds(idle < 1024 ? 20 : 200));
}

}  // namespace

std::string mpi_error_string(int rc) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(rc, text, &len) != MPI_SUCCESS) return "MPI error " + std::to_string(rc);
  return std::string(text, size_t(len));
}

void mpi_check(int rc, const char* call) {
  if (rc != MPI_SUCCESS) PD_THROW(kUnavailable, call, ": ", mpi_error_string(rc));
}

// ---- MpiFamily ----

MpiFamily::MpiFamily(MPI_Comm ctrl, int world_rank, int world_size)
    : ctrl_(ctrl), world_rank_(world_rank), world_size_(world_size), inbox_(kMaxFailureMessage + sizeof(int)) {
  const int rc = MPI_Irecv(inbox_.data(), int(inbox_.size()), MPI_BYTE, MPI_ANY_SOURCE, kFailureTag, ctrl_,
                           &inbox_req_);
  if (rc != MPI_SUCCESS) {
    MPI_Comm_free(&ctrl_);
    mpi_check(rc, "MPI_Irecv (failure channel)");
  }
}

MpiFamily::~MpiFamily() {
  if (mpi_finalised()) return;
  if (inbox_req_ != MPI_REQUEST_NULL) {
    MPI_Cancel(&inbox_req_);
    MPI_Wait(&inbox_req_, MPI_STATUS_IGNORE);  // a cancelled receive completes at once
  }
  for (size_t i = 0; i < outbox_reqs_.size(); ++i) {
    int done = 0;
    MPI_Test(&outbox_reqs_[i], &done, MPI_STATUS_IGNORE);
    if (done) continue;
    MPI_Request_free(&outbox_reqs_[i]);  // a peer that never looks again must not hold us here
    park(outbox_[i]);
  }
  MPI_Comm_free(&ctrl_);
}

void MpiFamily::poll_locked() {
  if (inbox_req_ == MPI_REQUEST_NULL) return;
  int done = 0;
  MPI_Status st;
  if (MPI_Test(&inbox_req_, &done, &st) != MPI_SUCCESS || !done) return;
  int count = 0;
  MPI_Get_count(&st, MPI_BYTE, &count);
  int code = int(StatusCode::kCancelled);
  if (count >= int(sizeof(int))) std::memcpy(&code, inbox_.data(), sizeof(int));
  const std::string text = count > int(sizeof(int)) ? std::string(inbox_.data() + sizeof(int), size_t(count) - sizeof(int))
                                                    : concat("world rank ", st.MPI_SOURCE, " failed");
  if (failure_.ok()) failure_ = Status(StatusCode(code), text);
}

void MpiFamily::throw_if_failed() {
  std::lock_guard lk(mu_);
  poll_locked();
  if (!failure_.ok()) throw Error(failure_);
}

void MpiFamily::fail(const Status& s) noexcept {
  try {
    std::lock_guard lk(mu_);
    poll_locked();
    if (!failure_.ok() || mpi_finalised()) return;
    failure_ = s;
    const std::string text = s.message().substr(0, kMaxFailureMessage);
    auto msg = std::make_shared<std::string>(sizeof(int) + text.size(), '\0');
    const int code = int(s.code());
    std::memcpy(msg->data(), &code, sizeof(int));
    std::memcpy(msg->data() + sizeof(int), text.data(), text.size());
    for (int r = 0; r < world_size_; ++r) {
      if (r == world_rank_) continue;
      MPI_Request req = MPI_REQUEST_NULL;
      if (MPI_Isend(msg->data(), int(msg->size()), MPI_BYTE, r, kFailureTag, ctrl_, &req) != MPI_SUCCESS) continue;
      outbox_reqs_.push_back(req);
      outbox_.push_back(msg);
    }
  } catch (...) {
    // Out of memory or a system error while failing: this process still throws; the others time out.
  }
}

void MpiFamily::fail_and_throw(const Status& s) {
  fail(s);
  throw_if_failed();
  throw Error(s);  // only when the lock itself failed
}

// ---- MpiGroup ----

MpiGroup::~MpiGroup() {
  if (comm != MPI_COMM_NULL && !mpi_finalised()) MPI_Comm_free(&comm);
}

std::string MpiGroup::describe() const { return group_str(name, members); }

std::string MpiGroup::ranks_str(const std::vector<int>& group_ranks) const {
  return paradit::ranks_str(members, group_ranks);
}

// ---- Messages ----

Tensor buffer_view(const Message& m) {
  return Tensor::borrow(m.buffer->data(), m.tensor.shape(), m.tensor.dtype(), Device::cpu(), m.buffer);
}

void post(MpiGroup& g, Message& m, int tag, const std::string& what) {
  m.bytes = m.tensor.defined() ? m.tensor.nbytes() : 0;
  if (m.bytes > size_t(INT_MAX))
    g.family->fail_and_throw(Status(StatusCode::kInvalidArgument,
                                    concat(what, ": a piece of ", m.bytes, " bytes (", type_str(m.tensor),
                                           ") is larger than one MPI message can carry (2 GiB)")));
  m.buffer = std::make_shared<std::vector<char>>(m.bytes);
  if (m.send && m.bytes > 0) host_copy(buffer_view(m), m.tensor);
  const int peer = g.comm_ranks[size_t(m.peer)];
  const int rc = m.send ? MPI_Isend(m.buffer->data(), int(m.bytes), MPI_BYTE, peer, tag, g.comm, &m.req)
                        : MPI_Irecv(m.buffer->data(), int(m.bytes), MPI_BYTE, peer, tag, g.comm, &m.req);
  if (rc != MPI_SUCCESS)
    g.family->fail_and_throw(Status(StatusCode::kUnavailable, concat(what, ": ", m.send ? "MPI_Isend" : "MPI_Irecv",
                                                                     " to ", g.ranks_str({m.peer}), ": ",
                                                                     mpi_error_string(rc))));
}

namespace {

std::string piece_str(const Message& m) {
  return m.tensor.defined() ? type_str(m.tensor) + " (" + std::to_string(m.bytes) + " bytes)" : "nothing";
}

// Marks m done if it completed; throws (failing the family) on an MPI error or a receive of the wrong size.
void test(MpiGroup& g, Message& m, const std::string& what) {
  int done = 0;
  MPI_Status st;
  const int rc = MPI_Test(&m.req, &done, &st);
  int error_class = MPI_SUCCESS;
  if (rc != MPI_SUCCESS) MPI_Error_class(rc, &error_class);
  if (error_class == MPI_ERR_TRUNCATE) {
    m.done = true;  // the request is complete, with its error
    g.family->fail_and_throw(Status(StatusCode::kInvalidArgument,
                                    concat(what, ": ", g.ranks_str({m.peer}), " sent more than the ", piece_str(m),
                                           " that ", g.ranks_str({g.rank}), " expects from it")));
  }
  if (rc != MPI_SUCCESS)
    g.family->fail_and_throw(Status(StatusCode::kUnavailable, concat(what, ": ", m.send ? "send to " : "receive from ",
                                                                     g.ranks_str({m.peer}), " failed: ",
                                                                     mpi_error_string(rc))));
  if (!done) return;
  m.done = true;
  if (m.send) return;
  int count = 0;
  MPI_Get_count(&st, MPI_BYTE, &count);
  if (size_t(count) != m.bytes)
    g.family->fail_and_throw(Status(StatusCode::kInvalidArgument,
                                    concat(what, ": ", g.ranks_str({m.peer}), " sent ", count, " bytes where ",
                                           g.ranks_str({g.rank}), " expects ", piece_str(m), " from it")));
}

std::string timeout_message(const MpiGroup& g, const std::vector<Message>& msgs, std::chrono::milliseconds timeout,
                            const std::string& what) {
  std::vector<int> silent, not_taking;  // peers whose data did not come; peers that did not take ours
  for (const Message& m : msgs)
    if (!m.done) (m.send ? not_taking : silent).push_back(m.peer);
  std::string who;
  if (!silent.empty()) who = g.ranks_str(silent) + " sent nothing";
  if (!not_taking.empty()) who += (who.empty() ? "" : "; ") + g.ranks_str(not_taking) + " did not take our data";
  return concat(what, " timed out after ", seconds_str(timeout), ": ", who, "; ", g.ranks_str({g.rank}),
                " gave up waiting");
}

}  // namespace

void wait_messages(MpiGroup& g, std::vector<Message>& msgs, std::chrono::steady_clock::time_point deadline,
              std::chrono::milliseconds timeout, const std::string& what) {
  try {
    int idle = 0;
    for (;;) {
      bool all = true, moved = false;
      for (Message& m : msgs) {
        if (m.done) continue;
        test(g, m, what);
        moved |= m.done;
        all &= m.done;
      }
      if (all) return;
      g.family->throw_if_failed();
      if (std::chrono::steady_clock::now() > deadline)
        g.family->fail_and_throw(Status(StatusCode::kTimeout, timeout_message(g, msgs, timeout, what)));
      if (moved) idle = 0;
      back_off(idle);
    }
  } catch (...) {
    abandon(msgs);
    throw;
  }
}

void abandon(std::vector<Message>& msgs) noexcept {
  if (mpi_finalised()) return;
  for (Message& m : msgs) {
    if (m.done || m.req == MPI_REQUEST_NULL) continue;
    if (!m.send) MPI_Cancel(&m.req);
    MPI_Request_free(&m.req);
    park(m.buffer);
    m.done = true;
  }
}

}  // namespace paradit::detail

#endif
