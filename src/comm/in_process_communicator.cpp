#include "comm/in_process_communicator.h"

#include <algorithm>
#include <map>
#include <tuple>

#include "comm/host_checks.h"
#include "comm/host_copy.h"

namespace paradit::detail {

namespace {

constexpr const char* kTransport = "in-process";

void require_host(const Tensor& t, const char* op) { detail::require_host(t, op, kTransport); }

void require_list(std::span<const Tensor> list, int size, const char* op, const char* what) {
  detail::require_list(list, size, op, what, kTransport);
}

bool same_type(const Tensor& a, const Tensor& b) { return a.dtype() == b.dtype() && a.shape() == b.shape(); }

}  // namespace

InProcessCommunicator::InProcessCommunicator(std::shared_ptr<InProcessGroupState> group, int rank)
    : group_(std::move(group)), rank_(rank) {}

void InProcessCommunicator::collective(const std::string& op, Contribution mine, const Check& check,
                                       const std::vector<Phase>& phases) {
  InProcessDomain& d = *group_->domain;
  const int n = size();
  const auto deadline = std::chrono::steady_clock::now() + timeout();
  auto part = std::make_shared<const Contribution>(std::move(mine));

  std::unique_lock lk(d.mu);
  d.throw_if_failed();
  const uint64_t id = group_->next_op[rank_]++;
  CollectiveSlot& slot = group_->slots[id];
  if (slot.arrived == 0) {
    slot.op = op;
    slot.parts.resize(n);
    slot.finished.assign(phases.size(), 0);
  } else if (slot.op != op) {
    const int first = int(std::find_if(slot.parts.begin(), slot.parts.end(), [](auto& p) { return p != nullptr; }) -
                          slot.parts.begin());
    d.fail(
        Status(StatusCode::kInvalidArgument, detail::concat("mismatched collectives on group ", describe(), " (call #",
                                                            id, "): ", group_->ranks_str({first}), " called ", slot.op,
                                                            ", ", group_->ranks_str({rank_}), " called ", op)));
    d.throw_if_failed();
  }
  slot.parts[rank_] = part;
  if (++slot.arrived == n) {
    const std::string problem = check ? check(slot) : std::string();
    if (!problem.empty()) d.fail(Status(StatusCode::kInvalidArgument, op + " on group " + describe() + ": " + problem));
    d.cv.notify_all();
  }

  const std::string what = detail::concat(op, " (call #", id, ") on group ", describe());
  wait_or_fail(
      lk, d, deadline, [&] { return slot.arrived == n; },
      [&] {
        std::vector<int> missing;
        for (int r = 0; r < n; ++r)
          if (slot.parts[r] == nullptr) missing.push_back(r);
        return detail::concat(what, " timed out after ", seconds_str(timeout()), ": ", group_->ranks_str(missing),
                              " did not arrive; ", group_->ranks_str({rank_}), " gave up waiting");
      });
  d.throw_if_failed();  // the contributions did not fit together, or another rank failed meanwhile

  for (size_t ph = 0; ph < phases.size(); ++ph) {
    lk.unlock();
    const Status s = capture([&] { phases[ph](slot); });
    lk.lock();
    if (!s.ok()) {
      d.fail(s);
      d.throw_if_failed();
    }
    ++slot.finished[ph];
    d.cv.notify_all();
    wait_or_fail(
        lk, d, deadline, [&] { return slot.finished[ph] == n; },
        [&] {
          return detail::concat(what, " timed out after ", seconds_str(timeout()),
                                ": every rank arrived but not all finished copying; ", group_->ranks_str({rank_}),
                                " gave up waiting");
        });
  }
  if (++slot.left == n) group_->slots.erase(id);
}

void InProcessCommunicator::all_to_all_v(std::span<const Tensor> recv, std::span<const Tensor> send) {
  const int n = size();
  require_list(recv, n, "all_to_all", "recv");
  require_list(send, n, "all_to_all", "send");
  Contribution c;
  c.recv.assign(recv.begin(), recv.end());
  c.send.assign(send.begin(), send.end());
  auto check = [n, this](CollectiveSlot& s) -> std::string {
    for (int p = 0; p < n; ++p)
      for (int q = 0; q < n; ++q)
        if (!same_type(s.parts[p]->send[q], s.parts[q]->recv[p]))
          return detail::concat(group_->ranks_str({p}), " sends ", type_str(s.parts[p]->send[q]), " to rank ", q,
                                ", which expects ", type_str(s.parts[q]->recv[p]), " from it");
    return {};
  };
  auto copy = [&](const CollectiveSlot& s) {
    for (int p = 0; p < n; ++p) host_copy(recv[p], s.parts[p]->send[rank_]);
  };
  collective("all_to_all", std::move(c), check, {copy});
}

void InProcessCommunicator::all_gather_v(std::span<const Tensor> recv, const Tensor& send) {
  const int n = size();
  require_list(recv, n, "all_gather", "recv");
  require_host(send, "all_gather");
  Contribution c;
  c.recv.assign(recv.begin(), recv.end());
  c.send = {send};
  auto check = [n, this](CollectiveSlot& s) -> std::string {
    for (int p = 0; p < n; ++p)
      for (int q = 0; q < n; ++q)
        if (!same_type(s.parts[p]->send[0], s.parts[q]->recv[p]))
          return detail::concat(group_->ranks_str({p}), " contributes ", type_str(s.parts[p]->send[0]), " but rank ", q,
                                " expects ", type_str(s.parts[q]->recv[p]), " from it");
    return {};
  };
  auto copy = [&](const CollectiveSlot& s) {
    for (int p = 0; p < n; ++p) host_copy(recv[p], s.parts[p]->send[0]);
  };
  collective("all_gather", std::move(c), check, {copy});
}

void InProcessCommunicator::reduce_scatter_v(const Tensor& recv, std::span<const Tensor> send) {
  const int n = size();
  require_host(recv, "reduce_scatter");
  require_summable(recv, "reduce_scatter");
  require_list(send, n, "reduce_scatter", "send");
  Contribution c;
  c.tensor = recv;
  c.send.assign(send.begin(), send.end());
  auto check = [n, this](CollectiveSlot& s) -> std::string {
    for (int p = 0; p < n; ++p)
      for (int q = 0; q < n; ++q)
        if (!same_type(s.parts[p]->send[q], s.parts[q]->tensor))
          return detail::concat(group_->ranks_str({p}), " contributes ", type_str(s.parts[p]->send[q]), " to rank ", q,
                                ", which receives ", type_str(s.parts[q]->tensor));
    return {};
  };
  // Summed in rank order into a private buffer first: recv may alias a piece that others still read.
  std::vector<float> acc;
  auto sum = [&](const CollectiveSlot& s) {
    acc.assign(size_t(recv.numel()), 0.0f);
    for (int p = 0; p < n; ++p) host_accumulate(acc.data(), s.parts[p]->send[rank_]);
  };
  auto store = [&](const CollectiveSlot&) { host_store(recv, acc.data()); };
  collective("reduce_scatter", std::move(c), check, {sum, store});
}

void InProcessCommunicator::all_reduce(const Tensor& t) {
  const int n = size();
  require_host(t, "all_reduce");
  require_summable(t, "all_reduce");
  Contribution c;
  c.tensor = t;
  auto check = [n, this](CollectiveSlot& s) -> std::string {
    for (int p = 1; p < n; ++p)
      if (!same_type(s.parts[p]->tensor, s.parts[0]->tensor))
        return detail::concat(group_->ranks_str({p}), " passes ", type_str(s.parts[p]->tensor), ", rank 0 passes ",
                              type_str(s.parts[0]->tensor));
    return {};
  };
  // Every rank sums the same values in the same (rank) order, so all get the same bits; the sum is stored
  // only after every rank has read every input.
  std::vector<float> acc;
  auto sum = [&](const CollectiveSlot& s) {
    acc.assign(size_t(t.numel()), 0.0f);
    for (int p = 0; p < n; ++p) host_accumulate(acc.data(), s.parts[p]->tensor);
  };
  auto store = [&](const CollectiveSlot&) { host_store(t, acc.data()); };
  collective("all_reduce", std::move(c), check, {sum, store});
}

void InProcessCommunicator::broadcast(const Tensor& t, int root) {
  const int n = size();
  require_host(t, "broadcast");
  PD_REQUIRE(root >= 0 && root < n, "broadcast: root ", root, " out of range for group ", describe());
  Contribution c;
  c.tensor = t;
  auto check = [n, root, this](CollectiveSlot& s) -> std::string {
    for (int p = 0; p < n; ++p)
      if (!same_type(s.parts[p]->tensor, s.parts[root]->tensor))
        return detail::concat(group_->ranks_str({p}), " passes ", type_str(s.parts[p]->tensor), ", root ", root,
                              " passes ", type_str(s.parts[root]->tensor));
    return {};
  };
  auto copy = [&](const CollectiveSlot& s) {
    if (rank_ != root) host_copy(t, s.parts[root]->tensor);
  };
  collective(detail::concat("broadcast from rank ", root), std::move(c), check, {copy});
}

void InProcessCommunicator::barrier() { collective("barrier", Contribution{}, nullptr, {}); }

std::unique_ptr<Communicator> InProcessCommunicator::split(int color, int key, const std::string& name) {
  Contribution c;
  c.color = color;
  c.key = key;
  c.name = name;
  const int n = size();
  // The last rank to arrive builds every new group, so all members of one share the same state.
  auto build = [n, this](CollectiveSlot& s) -> std::string {
    std::map<int, std::vector<std::tuple<int, int>>> by_color;  // color -> (key, parent rank)
    for (int p = 0; p < n; ++p)
      if (s.parts[p]->color >= 0) by_color[s.parts[p]->color].emplace_back(s.parts[p]->key, p);
    s.split.assign(n, {nullptr, -1});
    for (auto& [color, ranks] : by_color) {
      std::sort(ranks.begin(), ranks.end());
      std::vector<int> members;
      for (auto& [key, p] : ranks) members.push_back(group_->members[p]);
      auto state = make_group(group_->domain, s.parts[std::get<1>(ranks.front())]->name, std::move(members));
      for (size_t i = 0; i < ranks.size(); ++i) s.split[std::get<1>(ranks[i])] = {state, int(i)};
    }
    return {};
  };
  std::pair<std::shared_ptr<InProcessGroupState>, int> mine;
  auto take = [&](const CollectiveSlot& s) { mine = s.split[rank_]; };
  collective("split", std::move(c), build, {take});
  if (!mine.first) return nullptr;
  auto comm = std::make_unique<InProcessCommunicator>(mine.first, mine.second);
  comm->set_timeout(timeout());
  return comm;
}

void InProcessCommunicator::abort(const std::string& reason) noexcept {
  try {
    InProcessDomain& d = *group_->domain;
    std::lock_guard lk(d.mu);
    d.fail(Status(StatusCode::kCancelled, detail::concat("rank ", world_rank(), " failed: ", reason)));
  } catch (...) {
    // Locking failed (system error): nothing more can be done without the lock.
  }
}

}  // namespace paradit::detail
