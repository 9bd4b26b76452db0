#include <numeric>
#include <thread>

#include "comm/in_process_communicator.h"
#include "paradit/comm/in_process.h"

namespace paradit {

namespace detail {

std::string InProcessGroupState::describe() const { return group_str(name, members); }

std::string InProcessGroupState::ranks_str(const std::vector<int>& group_ranks) const {
  return paradit::ranks_str(members, group_ranks);
}

std::shared_ptr<InProcessGroupState> make_group(const std::shared_ptr<InProcessDomain>& domain, std::string name,
                                                std::vector<int> members) {
  auto g = std::make_shared<InProcessGroupState>();
  g->domain = domain;
  g->name = std::move(name);
  g->next_op.assign(members.size(), 0);
  g->members = std::move(members);
  std::erase_if(domain->groups, [](auto& w) { return w.expired(); });
  domain->groups.push_back(g);
  return g;
}

}  // namespace detail

InProcessGroup::InProcessGroup(int size, std::string name) : size_(size) {
  PD_REQUIRE(size >= 1, "InProcessGroup: size must be >= 1, got ", size);
  std::vector<int> members(size);
  std::iota(members.begin(), members.end(), 0);
  world_ = detail::make_group(std::make_shared<detail::InProcessDomain>(), std::move(name), std::move(members));
}

InProcessGroup::~InProcessGroup() = default;

std::unique_ptr<Communicator> InProcessGroup::communicator(int rank) {
  PD_REQUIRE(rank >= 0 && rank < size_, "InProcessGroup: rank ", rank, " out of range for ", size_, " ranks");
  return std::make_unique<detail::InProcessCommunicator>(world_, rank);
}

void InProcessGroup::reset() {
  detail::InProcessDomain& d = *world_->domain;
  std::lock_guard lk(d.mu);
  d.failure = Status();
  for (auto& w : d.groups) {
    if (auto g = w.lock()) {
      g->slots.clear();
      g->channels.clear();
      g->next_op.assign(g->members.size(), 0);
    }
  }
}

std::vector<Status> run_ranks(InProcessGroup& group, const std::function<void(Communicator&)>& fn) {
  const int n = group.size();
  std::vector<Status> outcomes(n);
  std::vector<std::thread> threads;
  threads.reserve(n);
  auto body = [&](int rank) {
    auto comm = group.communicator(rank);
    outcomes[rank] = capture([&] { fn(*comm); });
    if (!outcomes[rank].ok()) comm->abort(outcomes[rank].to_string());
  };
  const Status spawned = capture([&] {
    for (int r = 0; r < n; ++r) threads.emplace_back(body, r);
  });
  // Ranks already running would wait for the ones that never started: stop them.
  if (!spawned.ok()) group.communicator(0)->abort("could not start every rank's thread: " + spawned.to_string());
  for (auto& t : threads) t.join();
  if (!spawned.ok()) throw Error(spawned);
  return outcomes;
}

Status first_failure(const std::vector<Status>& outcomes) {
  for (const Status& s : outcomes)
    if (!s.ok() && s.code() != StatusCode::kCancelled) return s;
  for (const Status& s : outcomes)
    if (!s.ok()) return s;
  return Status();
}

}  // namespace paradit
