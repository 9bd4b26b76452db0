// The in-process Communicator: one rank's handle on a group's shared state.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "comm/in_process_state.h"
#include "paradit/comm/communicator.h"

namespace paradit::detail {

class InProcessCommunicator final : public Communicator {
 public:
  InProcessCommunicator(std::shared_ptr<InProcessGroupState> group, int rank);

  int rank() const override { return rank_; }
  int size() const override { return group_->size(); }
  const std::string& name() const override { return group_->name; }
  const std::vector<int>& members() const override { return group_->members; }

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
  // Run by the last rank to arrive, under the lock: checks that the contributions fit together (returning
  // what is wrong, or "") and may leave results in the slot.
  using Check = std::function<std::string(CollectiveSlot&)>;
  // This rank's share of the work, run without the lock once every rank has arrived.
  using Phase = std::function<void(const CollectiveSlot&)>;

  // Publishes this rank's contribution, waits for every member, then runs the phases with a barrier after
  // each, so that no rank returns (and frees or reuses its buffers) while another may still read or write
  // them, and no rank overwrites data in phase k+1 that another still reads in phase k.
  void collective(const std::string& op, Contribution mine, const Check& check, const std::vector<Phase>& phases);

  std::shared_ptr<InProcessGroupState> group_;
  int rank_;
};

}  // namespace paradit::detail
