// Shared state of the MPI transport (compiled only with MPI): the failure family, groups, messages in flight.
#pragma once

#include <mpi.h>

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "paradit/core/status.h"
#include "paradit/core/tensor.h"

namespace paradit::detail {

// What this process's world and every group split from it share: the first failure, and the control channel
// (a duplicate of the world's MPI communicator, with a receive always posted) that carries a failure to every
// other process of the world, so that theirs stop too.
class MpiFamily {
 public:
  // Takes ownership of ctrl, whose ranks are the world ranks.
  MpiFamily(MPI_Comm ctrl, int world_rank, int world_size);
  ~MpiFamily();
  MpiFamily(const MpiFamily&) = delete;
  MpiFamily& operator=(const MpiFamily&) = delete;

  // Throws the family's failure: this process's, or one another process sent.
  void throw_if_failed();
  // Records s as the family's failure unless one came first and sends it to every other process. Never throws.
  void fail(const Status& s) noexcept;
  // fail(s), then throws the family's failure (s, or the one that came first).
  [[noreturn]] void fail_and_throw(const Status& s);

 private:
  void poll_locked();  // picks up a failure sent by another process

  std::mutex mu_;
  Status failure_;
  MPI_Comm ctrl_;
  int world_rank_, world_size_;
  MPI_Request inbox_req_ = MPI_REQUEST_NULL;
  std::vector<char> inbox_;
  std::vector<MPI_Request> outbox_reqs_;
  std::vector<std::shared_ptr<std::string>> outbox_;  // the messages those requests send
};

// One group of the family in this process: its own MPI communicator (messages of different groups never meet),
// and its members.
struct MpiGroup {
  std::shared_ptr<MpiFamily> family;
  MPI_Comm comm = MPI_COMM_NULL;  // owned
  std::string name;
  std::vector<int> members;     // world ranks, by group rank
  std::vector<int> comm_ranks;  // rank in comm, by group rank
  int rank = 0;                 // this process's group rank
  uint64_t calls = 0;           // collectives entered

  ~MpiGroup();
  int size() const { return int(members.size()); }
  std::string describe() const;
  std::string ranks_str(const std::vector<int>& group_ranks) const;
};

// One MPI message in flight: a send of a packed copy of a tensor, or a receive into a buffer unpacked later.
// The buffer is the transport's own, so a message abandoned on a failure can never touch the caller's memory.
struct Message {
  bool send = false;
  int peer = 0;             // group rank
  Tensor tensor;            // the caller's piece: what was packed, or where a receive lands (undefined: none)
  size_t bytes = 0;         // expected size
  std::shared_ptr<std::vector<char>> buffer;
  MPI_Request req = MPI_REQUEST_NULL;
  bool done = false;

  static Message of(bool send, int peer, Tensor tensor) {
    Message m;
    m.send = send;
    m.peer = peer;
    m.tensor = std::move(tensor);
    return m;
  }
};

// A contiguous view of `bytes` over a message buffer, of t's shape and dtype.
Tensor buffer_view(const Message& m);

// Posts m on the group's communicator with `tag`: a send packs m.tensor first. Throws (failing the family) when
// MPI refuses.
void post(MpiGroup& g, Message& m, int tag, const std::string& what);

// Polls until every message is done, watching the family's failure and the deadline. A receive of the wrong size
// fails the family with Error(kInvalidArgument); at the deadline the family fails with Error(kTimeout,
// "<what> timed out after …: <who>") naming the peers whose messages are still pending. Unfinished messages are
// abandoned (see abandon) before it throws.
void wait_messages(MpiGroup& g, std::vector<Message>& msgs, std::chrono::steady_clock::time_point deadline,
              std::chrono::milliseconds timeout, const std::string& what);

// Gives up on the messages that are not done: receives are cancelled, every request is freed, and their buffers
// are kept until exit (MPI may still touch them). Never throws.
void abandon(std::vector<Message>& msgs) noexcept;

}  // namespace paradit::detail
