// The MPI Communicator (compiled only with MPI): this process's rank of one group.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "comm/mpi/mpi_state.h"
#include "paradit/comm/communicator.h"

namespace paradit::detail {

class MpiCommunicator final : public Communicator {
 public:
  explicit MpiCommunicator(std::shared_ptr<MpiGroup> group);

  int rank() const override { return group_->rank; }
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
  // One collective: to[p] goes to rank p, from[p] says what comes from rank p (its shape and dtype); undefined
  // entries carry nothing, but every peer still gets one (possibly empty) message, so the collectives of a group
  // match one for one. Returns the received pieces by rank, as contiguous views of the transport's buffers (the
  // own rank's entry is a packed copy of to[rank()] when that is defined).
  std::vector<Tensor> exchange(const char* op, int tag, const std::vector<Tensor>& to,
                               const std::vector<Tensor>& from);

  std::shared_ptr<MpiGroup> group_;
};

// The first tag of point-to-point transfers; collectives use tags below it.
constexpr int kP2PTag = 100;

}  // namespace paradit::detail
