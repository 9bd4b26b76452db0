// Point-to-point transfers of the in-process transport: per (sender, receiver) channel, sends and receives are
// matched in posting order; whichever side posts second copies the data and marks the transfer done.
#include "comm/host_copy.h"
#include "comm/in_process_communicator.h"

namespace paradit::detail {

namespace {

class InProcessRequest final : public CommRequest {
 public:
  InProcessRequest(std::shared_ptr<InProcessGroupState> group, int rank, std::chrono::milliseconds timeout,
                   std::chrono::steady_clock::time_point deadline, std::vector<P2POp> ops,
                   std::vector<std::shared_ptr<Transfer>> transfers)
      : group_(std::move(group)),
        rank_(rank),
        timeout_(timeout),
        deadline_(deadline),
        ops_(std::move(ops)),
        transfers_(std::move(transfers)) {}

  void wait() override {
    InProcessDomain& d = *group_->domain;
    std::unique_lock lk(d.mu);
    auto all_done = [&] {
      for (auto& t : transfers_)
        if (!t->done) return false;
      return true;
    };
    wait_or_fail(lk, d, deadline_, all_done, [&] { return timeout_message(); });
  }

 private:
  // Under the lock: which peers have not posted their side.
  std::string timeout_message() const {
    std::string missing;
    for (size_t i = 0; i < ops_.size(); ++i) {
      const Transfer& t = *transfers_[i];
      if (t.done) continue;
      const bool send = ops_[i].kind == P2POp::Kind::kSend;
      const bool posted = send ? t.dst.defined() : t.src.defined();
      missing += missing.empty() ? "" : "; ";
      missing += group_->ranks_str({ops_[i].peer}) + (posted ? " matched but the copy did not finish"
                                                      : send ? " did not post the recv matching our send"
                                                             : " did not post the send matching our recv");
    }
    return detail::concat("send/recv on group ", group_->describe(), " timed out after ", seconds_str(timeout_), " on ",
                          group_->ranks_str({rank_}), ": ", missing);
  }

  std::shared_ptr<InProcessGroupState> group_;
  int rank_;
  std::chrono::milliseconds timeout_;
  std::chrono::steady_clock::time_point deadline_;
  std::vector<P2POp> ops_;
  std::vector<std::shared_ptr<Transfer>> transfers_;  // by op
};

}  // namespace

std::unique_ptr<CommRequest> InProcessCommunicator::start(std::vector<P2POp> ops) {
  for (const P2POp& op : ops) {
    PD_REQUIRE(op.peer >= 0 && op.peer < size(), "send/recv: peer ", op.peer, " out of range for group ", describe());
    PD_REQUIRE(op.tensor.defined() && op.tensor.device().is_cpu(),
               "send/recv: the in-process transport moves host tensors, got ",
               op.tensor.defined() ? op.tensor.desc() : std::string("an undefined tensor"));
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout();
  InProcessDomain& d = *group_->domain;
  std::vector<std::shared_ptr<Transfer>> transfers, to_copy;
  {
    std::lock_guard lk(d.mu);
    d.throw_if_failed();
    for (const P2POp& op : ops) {
      const bool send = op.kind == P2POp::Kind::kSend;
      Channel& ch = group_->channels[send ? std::pair(rank_, op.peer) : std::pair(op.peer, rank_)];
      auto& waiting = send ? ch.recvs : ch.sends;
      std::shared_ptr<Transfer> t;
      if (waiting.empty()) {
        t = std::make_shared<Transfer>();
        (send ? ch.sends : ch.recvs).push_back(t);
      } else {
        t = waiting.front();
        waiting.pop_front();
        to_copy.push_back(t);
      }
      (send ? t->src : t->dst) = op.tensor;
      if (t->src.defined() && t->dst.defined() &&
          (t->src.dtype() != t->dst.dtype() || t->src.shape() != t->dst.shape())) {
        const int from = send ? rank_ : op.peer, to = send ? op.peer : rank_;
        d.fail(Status(StatusCode::kInvalidArgument,
                      detail::concat("send of ", type_str(t->src), " from ", group_->ranks_str({from}), " to rank ", to,
                                     " on group ", describe(), " does not match the recv of ", type_str(t->dst),
                                     " posted for it")));
        d.throw_if_failed();
      }
      transfers.push_back(std::move(t));
    }
  }
  for (auto& t : to_copy) {
    const Status s = capture([&] { host_copy(t->dst, t->src); });
    std::lock_guard lk(d.mu);
    if (!s.ok()) {
      d.fail(s);
      d.throw_if_failed();
    }
    t->done = true;
    d.cv.notify_all();
  }
  return std::make_unique<InProcessRequest>(group_, rank_, timeout(), deadline, std::move(ops), std::move(transfers));
}

}  // namespace paradit::detail
