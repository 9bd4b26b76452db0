// The collectives of the NCCL transport: each stages what NCCL cannot address directly, issues one NCCL group
// and unpacks what arrived.
#include "comm/nccl/nccl_communicator.h"

#if PARADIT_HAS_NCCL

namespace paradit::detail {

namespace {

ncclDataType_t sum_type(const Tensor& t, const char* op) {
  switch (t.dtype()) {
    case DType::kF32: return ncclFloat32;
    case DType::kBF16: return ncclBfloat16;
    case DType::kF16: return ncclFloat16;
    default: PD_THROW(kInvalidArgument, op, ": sums f32, bf16 or f16 tensors, got ", t.desc());
  }
}

// Whether the pieces are equally long, contiguous and back to back in memory: then one ncclAllGather or
// ncclReduceScatter over the whole buffer does the job.
bool back_to_back(std::span<const Tensor> pieces) {
  const size_t bytes = pieces[0].nbytes();
  if (bytes == 0) return false;
  const char* base = static_cast<const char*>(pieces[0].data());
  for (size_t p = 0; p < pieces.size(); ++p)
    if (!pieces[p].is_contiguous() || pieces[p].nbytes() != bytes ||
        static_cast<const char*>(pieces[p].data()) != base + p * bytes)
      return false;
  return true;
}

}  // namespace

void NcclCommunicator::all_to_all_v(std::span<const Tensor> recv, std::span<const Tensor> send) {
  const int n = size();
  PD_REQUIRE(int(recv.size()) == n && int(send.size()) == n, "all_to_all: ", send.size(), " send and ", recv.size(),
             " recv pieces for ", n, " ranks");
  std::vector<Staged> s, r;
  for (int p = 0; p < n; ++p) {
    require_device(send[p], "all_to_all");
    require_device(recv[p], "all_to_all");
    s.push_back(Staged::for_send(be_, send[p]));
    r.push_back(Staged::for_recv(be_, recv[p]));
  }
  collective("all_to_all", [&](FirstError& e) {
    for (int p = 0; p < n; ++p) {
      if (s[p].bytes()) e(ncclSend(s[p].ptr(), s[p].bytes(), ncclUint8, p, comm_, stream_));
      if (r[p].bytes()) e(ncclRecv(r[p].ptr(), r[p].bytes(), ncclUint8, p, comm_, stream_));
    }
  });
  for (const Staged& x : r) x.unpack(be_);
}

void NcclCommunicator::all_gather_v(std::span<const Tensor> recv, const Tensor& send) {
  const int n = size();
  PD_REQUIRE(int(recv.size()) == n, "all_gather: ", recv.size(), " recv pieces for ", n, " ranks");
  require_device(send, "all_gather");
  for (const Tensor& t : recv) require_device(t, "all_gather");
  const Staged s = Staged::for_send(be_, send);
  if (back_to_back(recv)) {
    collective("all_gather", [&](FirstError& e) {
      e(ncclAllGather(s.ptr(), recv[0].data(), recv[0].nbytes(), ncclUint8, comm_, stream_));
    });
    return;
  }
  // Uneven or scattered pieces: each rank broadcasts its own.
  std::vector<Staged> r;
  for (const Tensor& t : recv) r.push_back(Staged::for_recv(be_, t));
  collective("all_gather", [&](FirstError& e) {
    for (int p = 0; p < n; ++p)
      if (r[p].bytes())
        e(ncclBroadcast(p == rank_ ? s.ptr() : r[p].ptr(), r[p].ptr(), r[p].bytes(), ncclUint8, p, comm_, stream_));
  });
  for (const Staged& x : r) x.unpack(be_);
}

void NcclCommunicator::reduce_scatter_v(const Tensor& recv, std::span<const Tensor> send) {
  const int n = size();
  PD_REQUIRE(int(send.size()) == n, "reduce_scatter: ", send.size(), " send pieces for ", n, " ranks");
  require_device(recv, "reduce_scatter");
  const ncclDataType_t type = sum_type(recv, "reduce_scatter");
  for (const Tensor& t : send) {
    require_device(t, "reduce_scatter");
    PD_REQUIRE(t.dtype() == recv.dtype(), "reduce_scatter: pieces ", t.desc(), " and recv ", recv.desc(),
               " differ in dtype");
  }
  PD_REQUIRE(send[rank_].shape() == recv.shape(), "reduce_scatter: this rank's piece ", send[rank_].desc(),
             " differs from recv ", recv.desc());
  const Staged r = Staged::for_recv(be_, recv);
  if (back_to_back(send)) {
    collective("reduce_scatter", [&](FirstError& e) {
      e(ncclReduceScatter(send[0].data(), r.ptr(), size_t(recv.numel()), type, ncclSum, comm_, stream_));
    });
  } else {
    // Uneven or scattered pieces: one reduction to each rank.
    std::vector<Staged> s;
    for (const Tensor& t : send) s.push_back(Staged::for_send(be_, t));
    collective("reduce_scatter", [&](FirstError& e) {
      for (int p = 0; p < n; ++p)
        if (s[p].bytes())
          e(ncclReduce(s[p].ptr(), p == rank_ ? r.ptr() : nullptr, size_t(s[p].buffer.numel()), type, ncclSum, p, comm_,
                       stream_));
    });
  }
  r.unpack(be_);
}

void NcclCommunicator::all_reduce(const Tensor& t) {
  require_device(t, "all_reduce");
  const ncclDataType_t type = sum_type(t, "all_reduce");
  const Staged x = Staged::for_send(be_, t);
  collective("all_reduce", [&](FirstError& e) {
    if (x.bytes()) e(ncclAllReduce(x.ptr(), x.ptr(), size_t(t.numel()), type, ncclSum, comm_, stream_));
  });
  x.unpack(be_);
}

void NcclCommunicator::broadcast(const Tensor& t, int root) {
  require_device(t, "broadcast");
  PD_REQUIRE(root >= 0 && root < size(), "broadcast: root ", root, " out of range for group ", describe());
  const Staged x = rank_ == root ? Staged::for_send(be_, t) : Staged::for_recv(be_, t);
  collective(detail::concat("broadcast from rank ", root), [&](FirstError& e) {
    if (x.bytes()) e(ncclBroadcast(x.ptr(), x.ptr(), x.bytes(), ncclUint8, root, comm_, stream_));
  });
  if (rank_ != root) x.unpack(be_);
}

void NcclCommunicator::barrier() {
  // NCCL has no barrier: a one-float all-reduce that every rank must join.
  collective("barrier", [&](FirstError& e) {
    e(ncclAllReduce(scratch_.data(), scratch_.data(), 1, ncclFloat32, ncclSum, comm_, stream_));
  });
  if (in_flight_->stream_ordered) wait_all();  // a barrier holds the host too
}

}  // namespace paradit::detail

#endif
