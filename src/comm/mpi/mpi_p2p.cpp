// Point-to-point batches of the MPI transport: every transfer is posted at once (so a ring cannot deadlock);
// between two ranks they match in posting order (one tag for all of them). Receives land in the transport's
// buffers and are unpacked into the caller's tensors by wait().
#if defined(PARADIT_WITH_MPI)

#include "comm/comm_text.h"
#include "comm/host_copy.h"
#include "comm/mpi/mpi_communicator.h"

namespace paradit::detail {

namespace {

class MpiRequest final : public CommRequest {
 public:
  MpiRequest(std::shared_ptr<MpiGroup> group, std::vector<Message> msgs, std::chrono::milliseconds timeout,
             std::chrono::steady_clock::time_point deadline)
      : group_(std::move(group)), msgs_(std::move(msgs)), timeout_(timeout), deadline_(deadline) {}

  ~MpiRequest() override { abandon(msgs_); }  // never waited (the caller unwound): nothing may block here

  void wait() override {
    wait_messages(*group_, msgs_, deadline_, timeout_,
             concat("send/recv on group ", group_->describe(), " (", group_->ranks_str({group_->rank}), ")"));
    for (const Message& m : msgs_)
      if (!m.send) host_copy(m.tensor, buffer_view(m));
  }

 private:
  std::shared_ptr<MpiGroup> group_;
  std::vector<Message> msgs_;
  std::chrono::milliseconds timeout_;
  std::chrono::steady_clock::time_point deadline_;
};

}  // namespace

std::unique_ptr<CommRequest> MpiCommunicator::start(std::vector<P2POp> ops) {
  for (const P2POp& op : ops) {
    PD_REQUIRE(op.peer >= 0 && op.peer < size(), "send/recv: peer ", op.peer, " out of range for group ", describe());
    PD_REQUIRE(op.tensor.defined() && op.tensor.device().is_cpu(), "send/recv: the MPI transport moves host tensors, got ",
               op.tensor.defined() ? op.tensor.desc() : std::string("an undefined tensor"));
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout();
  group_->family->throw_if_failed();
  std::vector<Message> msgs;
  msgs.reserve(ops.size());
  for (P2POp& op : ops) msgs.push_back(Message::of(op.kind == P2POp::Kind::kSend, op.peer, op.tensor));
  const std::string what = concat("send/recv on group ", describe());
  try {
    for (Message& m : msgs) post(*group_, m, kP2PTag, what);
  } catch (...) {
    abandon(msgs);
    throw;
  }
  return std::make_unique<MpiRequest>(group_, std::move(msgs), timeout(), deadline);
}

}  // namespace paradit::detail

#endif
