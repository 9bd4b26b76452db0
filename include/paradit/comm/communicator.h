// Communicator: collectives and point-to-point transfers among the ranks of one group.
//
// SPMD contract: every member calls the same collectives in the same order. Tensors live on the caller's
// device (host memory for the in-process transport, the rank's GPU for NCCL) and may have any strides: the
// transport packs what it cannot move directly. Pieces that travel between two ranks must agree in shape and
// dtype on both ends.
//
// Nothing waits forever. Each call gives up after timeout() with Error(kTimeout) naming the op, the group and
// the ranks that did not arrive. A failure on one rank — abort(), a timeout, calls that do not match — poisons
// the whole family of groups (the world and every group split from it): every pending and later call on every
// rank throws, so one failing rank stops the run cleanly instead of leaving the others blocked.
#pragma once

#include <chrono>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "paradit/core/tensor.h"

namespace paradit {

// Sizes of the per-rank pieces of one dimension. Empty means even: size(dim) / ranks each (which must divide).
using Counts = std::vector<int64_t>;

// PARADIT_COMM_TIMEOUT (seconds, may be fractional) or 300 s.
std::chrono::milliseconds default_comm_timeout();

// One transfer of a point-to-point batch.
struct P2POp {
  enum class Kind { kSend, kRecv };
  Kind kind;
  Tensor tensor;
  int peer;  // group rank

  static P2POp send(Tensor t, int peer) { return {Kind::kSend, std::move(t), peer}; }
  static P2POp recv(Tensor t, int peer) { return {Kind::kRecv, std::move(t), peer}; }
};

// A posted batch of point-to-point transfers, running while the caller computes.
class CommRequest {
 public:
  virtual ~CommRequest() = default;
  // Returns once every transfer of the batch is complete: send buffers may be reused, recv buffers hold the
  // data. Throws like a collective (kTimeout naming the peers that did not post their side, kCancelled).
  virtual void wait() = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  // The group's name as messages give it ("world", "ulysses") and the world ranks of its members, in
  // group-rank order.
  virtual const std::string& name() const = 0;
  virtual const std::vector<int>& members() const = 0;
  int world_rank() const { return members()[rank()]; }
  std::string describe() const;  // "ulysses {4, 5, 6, 7}"

  std::chrono::milliseconds timeout() const { return timeout_; }
  void set_timeout(std::chrono::milliseconds t);

  // ---- What each transport implements ----

  // send[p] goes to rank p and lands in rank p's recv[rank()]. Both lists have size() entries; any piece may
  // be empty. Pieces of one list must not overlap each other.
  virtual void all_to_all_v(std::span<const Tensor> recv, std::span<const Tensor> send) = 0;
  // recv[p] receives rank p's send (recv[rank()] may alias send).
  virtual void all_gather_v(std::span<const Tensor> recv, const Tensor& send) = 0;
  // recv = Σ over ranks p of rank p's send[rank()]. f32, bf16 or f16, summed in f32.
  virtual void reduce_scatter_v(const Tensor& recv, std::span<const Tensor> send) = 0;
  // t = Σ over ranks of t, in place; every rank gets the same bits.
  virtual void all_reduce(const Tensor& t) = 0;
  // t = root's t.
  virtual void broadcast(const Tensor& t, int root) = 0;
  virtual void barrier() = 0;

  // Posts a batch of sends and receives and returns at once; transfers between two ranks match in posting
  // order. A batch is posted as one unit, so a ring where every rank sends to its successor and receives
  // from its predecessor cannot deadlock however large the messages are.
  virtual std::unique_ptr<CommRequest> start(std::vector<P2POp> ops) = 0;

  // Collective: a new group of the ranks that pass the same color (ordered by key, then by rank here);
  // color < 0 joins no group and gets null. The new group shares this family's failure state and timeout.
  virtual std::unique_ptr<Communicator> split(int color, int key, const std::string& name) = 0;

  // Makes every pending and later call on every rank of the family throw
  // Error(kCancelled, "rank <world rank> failed: <reason>"). Never blocks, never throws.
  virtual void abort(const std::string& reason) noexcept = 0;

  // ---- Stream order (device transports) ----

  // Device transports (NCCL) run each call behind the work the backend has queued. Synchronous (the default),
  // a call returns once its transfer is complete, so the host never runs ahead of a peer. Stream-ordered, a
  // call returns once its transfer is queued: the backend's later work waits for it on the device, not on the
  // host, and the host keeps a few calls in flight (each still timed, failing the family as a call would).
  // This removes a host round trip per call but is only safe once every kernel, library plan and buffer the
  // calls' neighbourhood uses exists: a first launch (lazy module loading) or a device-synchronising CUDA call
  // while a transfer waits on a peer can deadlock the process's GPUs. So switch it on after a synchronous
  // pass over the same shapes (and a barrier), for a loop that repeats them.
  //
  // Applies to this rank's communicators of the family (the world and every group split from it). Switching
  // off first waits for everything in flight (wait_all). Host transports complete every call on return: both
  // are no-ops there.
  virtual void set_stream_ordered(bool on) { (void)on; }
  // Waits on the host, with the timeout, until this rank's device work queued so far — compute and
  // transfers — is complete; throws as a call would if a transfer failed. Nothing to do for host transports.
  virtual void wait_all() {}

  // ---- Conveniences: one tensor cut along a dimension ----

  // Piece p of send along dim (send_counts[p] long) goes to rank p; the piece from rank p lands in piece p
  // of recv (recv_counts[p] long).
  void all_to_all(const Tensor& recv, const Tensor& send, int dim = 0, const Counts& send_counts = {},
                  const Counts& recv_counts = {});
  // Rank p's send lands in piece p of recv along dim (counts[p] long = rank p's send.size(dim)).
  void all_gather(const Tensor& recv, const Tensor& send, int dim = 0, const Counts& counts = {});
  // recv = Σ over ranks of piece rank() of their send along dim (counts[p] long).
  void reduce_scatter(const Tensor& recv, const Tensor& send, int dim = 0, const Counts& counts = {});
  void send(const Tensor& t, int peer) { start({P2POp::send(t, peer)})->wait(); }
  void recv(const Tensor& t, int peer) { start({P2POp::recv(t, peer)})->wait(); }

 private:
  std::chrono::milliseconds timeout_ = default_comm_timeout();
};

// The pieces of t along dim: counts[p] long each, or size(dim)/parts each when counts is empty.
std::vector<Tensor> split_along(const Tensor& t, int dim, const Counts& counts, int parts, const char* op);

}  // namespace paradit
