#include "comm/nccl/peer_copy.h"

#if PARADIT_HAS_NCCL

#include <cstdlib>
#include <vector>

#include "comm/comm_text.h"
#include "comm/nccl/nccl_communicator.h"

namespace paradit::detail {

namespace {

using Clock = std::chrono::steady_clock;

void require_cuda(cudaError_t e, const char* call) { PD_REQUIRE(e == cudaSuccess, call, ": ", cudaGetErrorString(e)); }

}  // namespace

std::optional<Rows2D> as_rows(const Tensor& t) {
  // Dimensions of more than one element, innermost first, with adjacent ones merged where they tile memory.
  std::vector<std::pair<int64_t, int64_t>> dims;  // (size, stride) in elements
  for (int d = t.dim() - 1; d >= 0; --d) {
    if (t.size(d) == 1) continue;
    if (!dims.empty() && t.stride(d) == dims.back().first * dims.back().second) {
      dims.back().first *= t.size(d);  // the merged dimension keeps the inner stride
      continue;
    }
    dims.emplace_back(t.size(d), t.stride(d));
  }
  const size_t es = t.element_size();
  Rows2D r{static_cast<char*>(t.data()), 1, size_t(t.numel()) * es, size_t(t.numel()) * es};
  if (dims.empty()) return r;
  if (dims[0].second != 1 || dims.size() > 2) return std::nullopt;
  if (dims.size() == 1) return r;
  r.rows = dims[1].first;
  r.width = size_t(dims[0].first) * es;
  r.pitch = size_t(dims[1].second) * es;
  return r;
}

PeerSend::~PeerSend() {
  // Destroying an event that a stream still waits on is allowed: CUDA releases it once the wait is resolved.
  if (ready) cudaEventDestroy(ready);
  if (cudaEvent_t c = copied.load()) cudaEventDestroy(c);
}

void PeerMailbox::post(const std::string& group, int from, int to, std::shared_ptr<PeerSend> send) {
  std::lock_guard lk(mu_);
  queues_[{group, from, to}].push_back(std::move(send));
}

std::shared_ptr<PeerSend> PeerMailbox::take(const std::string& group, int from, int to) {
  std::lock_guard lk(mu_);
  auto it = queues_.find({group, from, to});
  if (it == queues_.end() || it->second.empty()) return nullptr;
  std::shared_ptr<PeerSend> s = std::move(it->second.front());
  it->second.pop_front();
  return s;
}

std::shared_ptr<PeerMailbox> enable_peer_copies(const std::vector<int>& devices, std::string* reason) {
  const char* env = std::getenv("PARADIT_P2P");
  if (env != nullptr && std::string(env) == "nccl") {
    *reason = "PARADIT_P2P=nccl";
    return nullptr;
  }
  if (devices.size() < 2) {
    *reason = "one GPU";
    return nullptr;
  }
  for (int a : devices)
    for (int b : devices) {
      if (a == b) continue;
      int can = 0;
      if (cudaDeviceCanAccessPeer(&can, a, b) != cudaSuccess || !can) {
        *reason = concat("GPU ", a, " cannot reach the memory of GPU ", b, " (no peer access)");
        return nullptr;
      }
    }
  for (int a : devices) {
    require_cuda(cudaSetDevice(a), "cudaSetDevice");
    for (int b : devices) {
      if (a == b) continue;
      const cudaError_t e = cudaDeviceEnablePeerAccess(b, 0);
      if (e == cudaErrorPeerAccessAlreadyEnabled) {
        cudaGetLastError();  // not an error: clear it
      } else if (e != cudaSuccess) {
        cudaGetLastError();
        *reason = concat("enabling peer access from GPU ", a, " to GPU ", b, ": ", cudaGetErrorString(e));
        return nullptr;
      }
    }
  }
  return std::make_shared<PeerMailbox>();
}

// ---- The batch ----

// Sends: the stream waits for every receiver's copy before the source may change (stream-ordered), or the host
// waits for the copies (synchronous). Receives: the backend's stream waits for this rank's copies, then unpacks what
// was staged.
class PeerCopyRequest final : public CommRequest {
 public:
  PeerCopyRequest(NcclCommunicator& comm, Clock::time_point deadline, bool stream_ordered, std::string message)
      : comm_(comm), deadline_(deadline), stream_ordered_(stream_ordered), message_(std::move(message)) {}

  ~PeerCopyRequest() override {
    if (!complete_) wait_dropped(*this);
  }

  void wait() override {
    if (complete_) return;
    complete_ = true;
    const auto timeout_message = [this] { return message_; };
    for (const auto& s : sends) {
      comm_.watch(
          deadline_, [&] { return s->copied.load() != nullptr; }, timeout_message);
      finish(s->copied.load());
    }
    for (const auto& r : recvs) finish(r->copied.load());
    for (const Staged& st : staged) st.unpack(comm_.be_);
  }

  std::vector<Tensor> keep;  // the tensors whose memory the copies read or write
  std::vector<std::shared_ptr<PeerSend>> sends, recvs;
  std::vector<Staged> staged;  // receives landing in a contiguous stand-in first

 private:
  void finish(cudaEvent_t copied) {
    if (stream_ordered_) {
      comm_.check_cuda(cudaStreamWaitEvent(comm_.compute_, copied, 0), "cudaStreamWaitEvent");
    } else {
      comm_.watch_event(copied, deadline_, [this] { return message_; });
    }
  }

  NcclCommunicator& comm_;
  Clock::time_point deadline_;
  bool stream_ordered_;
  std::string message_;
  bool complete_ = false;
};

cudaStream_t NcclCommunicator::peer_stream(int peer) {
  if (peer_streams_.empty()) peer_streams_.assign(size_t(size()), nullptr);
  cudaStream_t& s = peer_streams_[size_t(peer)];
  if (!s) check_cuda(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
  return s;
}

std::unique_ptr<CommRequest> NcclCommunicator::start_on_copy_engines(std::vector<P2POp> ops, Clock::time_point deadline,
                                                                     const std::string& message) {
  throw_if_failed();
  check_cuda(cudaSetDevice(be_.device().index), "cudaSetDevice");
  const bool ordered = in_flight_->stream_ordered;
  if (ordered) {
    retire(kMaxInFlight - 1);
  } else {
    be_.synchronize();
  }
  auto req = std::make_unique<PeerCopyRequest>(*this, deadline, ordered, message);
  const auto event = [&] {
    cudaEvent_t e = nullptr;
    check_cuda(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "cudaEventCreateWithFlags");
    return e;
  };
  // Sends first, all of them, so that no two ranks wait for each other's post.
  for (const P2POp& op : ops) {
    if (op.kind != P2POp::Kind::kSend || op.tensor.numel() == 0) continue;
    std::optional<Rows2D> src = as_rows(op.tensor);
    Tensor t = op.tensor;
    if (!src) {  // no 2-D form: packed on the stream first
      t = Staged::for_send(be_, op.tensor).buffer;
      src = as_rows(t);
    }
    auto send = std::make_shared<PeerSend>();
    send->src = *src;
    send->bytes = t.nbytes();
    send->device = be_.device().index;
    send->ready = event();
    check_cuda(cudaEventRecord(send->ready, compute_), "cudaEventRecord");
    req->keep.push_back(t);
    req->sends.push_back(send);
    domain_->peer_copy->post(group_id_, rank_, op.peer, std::move(send));
  }
  // Receives: behind this rank's queued work (which may still read the buffers) and the sender's.
  check_cuda(cudaEventRecord(inputs_ready_, compute_), "cudaEventRecord");
  const auto timeout_message = [&] { return message; };
  for (const P2POp& op : ops) {
    if (op.kind != P2POp::Kind::kRecv || op.tensor.numel() == 0) continue;
    std::shared_ptr<PeerSend> send;
    watch(
        deadline, [&] { return (send = domain_->peer_copy->take(group_id_, op.peer, rank_)) != nullptr; },
        timeout_message);
    if (send->bytes != op.tensor.nbytes())
      fail(Status(StatusCode::kInvalidArgument,
                  concat("send/recv on group ", describe(), ": ", ranks_str(members_, {op.peer}), " sends ",
                         send->bytes, " bytes where ", ranks_str(members_, {rank_}), " receives ", op.tensor.desc())));
    // Both sides as rows of the same width, or one side contiguous (it takes the other's rows); else the receive
    // lands contiguous and is unpacked after.
    std::optional<Rows2D> dst = as_rows(op.tensor);
    Rows2D src = send->src;
    if (dst && !dst->contiguous() && !src.contiguous() && (dst->rows != src.rows || dst->width != src.width))
      dst.reset();
    if (!dst) {
      req->staged.push_back(Staged::for_recv(be_, op.tensor));
      dst = as_rows(req->staged.back().buffer);
      check_cuda(cudaEventRecord(inputs_ready_, compute_), "cudaEventRecord");
    }
    if (src.contiguous() && !dst->contiguous()) {
      src.rows = dst->rows;
      src.width = src.pitch = dst->width;
    } else if (dst->contiguous()) {
      dst->rows = src.rows;
      dst->width = dst->pitch = src.width;
    }
    req->keep.push_back(op.tensor);
    const cudaStream_t s = peer_stream(op.peer);
    check_cuda(cudaStreamWaitEvent(s, inputs_ready_, 0), "cudaStreamWaitEvent");
    check_cuda(cudaStreamWaitEvent(s, send->ready, 0), "cudaStreamWaitEvent");
    cudaMemcpy3DPeerParms copy{};
    copy.srcPtr = make_cudaPitchedPtr(src.ptr, src.pitch, src.width, size_t(src.rows));
    copy.srcDevice = send->device;
    copy.dstPtr = make_cudaPitchedPtr(dst->ptr, dst->pitch, src.width, size_t(src.rows));
    copy.dstDevice = be_.device().index;
    copy.extent = make_cudaExtent(src.width, size_t(src.rows), 1);
    check_cuda(cudaMemcpy3DPeerAsync(&copy, s), "cudaMemcpy3DPeerAsync");
    const cudaEvent_t copied = event();
    check_cuda(cudaEventRecord(copied, s), "cudaEventRecord");
    send->copied.store(copied);
    // The rank's in-flight list times this batch through its own stream.
    check_cuda(cudaStreamWaitEvent(stream_, copied, 0), "cudaStreamWaitEvent");
    req->recvs.push_back(std::move(send));
  }
  if (ordered) track(deadline, [message] { return message; });
  return req;
}

}  // namespace paradit::detail

#endif
