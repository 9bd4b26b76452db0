// Point-to-point batches between the GPUs of one process on the copy engines (2-D peer copies over NVLink or PCIe
// peer access) instead of NCCL kernels.
//
// Why: an NCCL send/recv runs as kernels on a few SMs. Beside a GEMM or an attention kernel that fills every SM
// (Ring's next K/V block, Ulysses' q/k/v while a GEMM runs) those CTAs and the compute kernel slow each other, and a
// strided view must be packed by a kernel first. A copy engine takes no SM, and a 2-D copy reads and writes the
// strided views in place (the q/k/v heads of one rank, the K/V columns of a packed qkv).
//
// How: the sender posts each send (address, layout, an event recorded on its stream after the data was written)
// in the process-wide mailbox under (group, from, to). The receiver takes them in posting order, queues the copy
// on a stream of its own per peer behind that event and behind its own queued work, and publishes an event
// recorded after the copy; the sender's stream waits for that event before anything may overwrite or free the
// source. So the host threads meet once per batch (the receiver waits, timed, for the sender's post) and the GPUs
// never wait on the host.
#pragma once

#include "comm/nccl/nccl_build.h"

#if PARADIT_HAS_NCCL

#include <cuda_runtime.h>

#include <atomic>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "paradit/core/tensor.h"

namespace paradit::detail {

// A tensor as rows of contiguous bytes: `rows` rows of `width` bytes, `pitch` bytes apart. A contiguous tensor is
// one row. Anything else (two strided dimensions that do not merge) has no such form and is staged.
struct Rows2D {
  char* ptr = nullptr;
  int64_t rows = 1;
  size_t width = 0, pitch = 0;
  bool contiguous() const { return rows == 1 || pitch == width; }
};
std::optional<Rows2D> as_rows(const Tensor& t);

// One posted send, shared by the sender's request and the receiver's (whichever lets go last destroys the events).
// It holds no Tensor: the memory stays the sender's, kept alive by the sender's request until its stream is
// behind `copied`.
struct PeerSend {
  Rows2D src;
  int device = 0;  // the sender's GPU
  size_t bytes = 0;
  cudaEvent_t ready = nullptr;               // on the sender's device, after the data was written
  std::atomic<cudaEvent_t> copied{nullptr};  // on the receiver's device, after the copy; published once
  ~PeerSend();
};

// The sends posted and not yet taken, per (group id, from group rank, to group rank), oldest first.
class PeerMailbox {
 public:
  void post(const std::string& group, int from, int to, std::shared_ptr<PeerSend> send);
  // The oldest send from `from` to `to` in the group, or null if none is posted yet.
  std::shared_ptr<PeerSend> take(const std::string& group, int from, int to);

 private:
  std::mutex mu_;
  std::map<std::tuple<std::string, int, int>, std::deque<std::shared_ptr<PeerSend>>> queues_;
};

// What create_nccl_communicators sets up for a world of GPUs in this process: the mailbox when every pair of GPUs
// can reach each other's memory (peer access enabled both ways) and PARADIT_P2P is not "nccl"; else null, and
// batches go through NCCL. `reason` says why not, for the log.
std::shared_ptr<PeerMailbox> enable_peer_copies(const std::vector<int>& devices, std::string* reason);

}  // namespace paradit::detail

#endif
