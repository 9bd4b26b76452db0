#include "paradit/models/flux_stale_kv.h"

#include <vector>

#include "paradit/core/status.h"

namespace paradit {

namespace {

// The K/V buffers of one block, made on first use: [B, sequence, heads, d] in the dtype of k.
std::pair<Tensor, Tensor> make_buffers(Backend& be, const Tensor& k, int64_t sequence, int64_t heads) {
  const Shape shape = {k.size(0), sequence, heads, k.size(3)};
  return {be.empty(shape, k.dtype()), be.empty(shape, k.dtype())};
}

void attend_buffer(Backend& be, const Tensor& out, const Tensor& q, const Tensor& kb, const Tensor& vb, float scale) {
  if (out.numel() > 0) be.attention(out, Tensor(), q, kb, vb, scale);
}

}  // namespace

void PipeFusionKv::set_patch(int64_t sequence, int64_t first, int64_t rows) {
  PD_REQUIRE(first >= 0 && rows >= 1 && first + rows <= sequence, "PipeFusion patch rows [", first, ", ", first + rows,
             ") outside a sequence of ", sequence);
  PD_REQUIRE(kv_.empty() || sequence == sequence_, "PipeFusion: the sequence changed from ", sequence_, " to ",
             sequence, " rows with K/V buffers kept");
  sequence_ = sequence;
  first_ = first;
  rows_ = rows;
}

int64_t PipeFusionKv::local_first() const {
  return sp_ ? first_ + SequenceShard(rows_, sp_->size()).start(sp_->rank()) : first_;
}

int64_t PipeFusionKv::local_rows() const { return sp_ ? SequenceShard(rows_, sp_->size()).count(sp_->rank()) : rows_; }

void PipeFusionKv::attend(Backend& be, int layer, const Tensor& out, const Tensor& q, const Tensor& k,
                          const Tensor& v, float scale) {
  PD_REQUIRE(k.size(1) == local_rows(), "PipeFusion attention: ", k.size(1), " rows of K, expected ", local_rows());
  const int U = sp_ ? sp_->size() : 1, u = sp_ ? sp_->rank() : 0;
  const SequenceShard heads(k.size(2), U);
  auto it = kv_.find(layer);
  if (it == kv_.end()) it = kv_.emplace(layer, make_buffers(be, k, sequence_, heads.count(u))).first;
  const auto& [kb, vb] = it->second;
  if (U == 1) {
    be.copy(kb.slice(1, first_, rows_), k);
    be.copy(vb.slice(1, first_, rows_), v);
    attend_buffer(be, out, q, kb, vb, scale);
    return;
  }
  // Rank p's rows of the patch, this rank's heads: q into a patch-long buffer, k and v straight into the kept
  // ones; every rank sends each peer that peer's heads of its own rows.
  const SequenceShard cut(rows_, U);
  const Tensor qh = be.empty({q.size(0), rows_, heads.count(u), q.size(3)}, q.dtype());
  std::vector<Tensor> send(static_cast<size_t>(U)), recv(static_cast<size_t>(U));
  for (const auto& [from, into] : {std::pair{&q, qh.slice(1, 0, rows_)}, std::pair{&k, kb.slice(1, first_, rows_)},
                                   std::pair{&v, vb.slice(1, first_, rows_)}}) {
    for (int p = 0; p < U; ++p) {
      send[size_t(p)] = from->slice(2, heads.start(p), heads.count(p));
      recv[size_t(p)] = into.slice(1, cut.start(p), cut.count(p));
    }
    sp_->all_to_all_v(recv, send);
  }
  // The patch's queries against every kept row, this rank's heads; then each rank's rows back, all heads.
  const Tensor oh = be.empty(qh.shape(), out.dtype());
  attend_buffer(be, oh, qh, kb, vb, scale);
  for (int p = 0; p < U; ++p) {
    send[size_t(p)] = oh.slice(1, cut.start(p), cut.count(p));
    recv[size_t(p)] = out.slice(2, heads.start(p), heads.count(p));
  }
  sp_->all_to_all_v(recv, send);
}

std::unique_ptr<CommRequest> PatchParallelKv::exchange(const Layer& l) {
  const int me = group_.rank();
  std::vector<P2POp> ops;
  // Sends and receives interleaved by peer, in the same order on every rank: one batch, so it cannot deadlock.
  for (int p = 0; p < group_.size(); ++p) {
    if (p == me) continue;
    for (const Tensor* buf : {&l.k, &l.v}) {
      ops.push_back(P2POp::send(buf->slice(1, shard_.start(me), shard_.count(me)), p));
      ops.push_back(P2POp::recv(buf->slice(1, shard_.start(p), shard_.count(p)), p));
    }
  }
  return group_.start(std::move(ops));
}

void PatchParallelKv::attend(Backend& be, int layer, const Tensor& out, const Tensor& q, const Tensor& k,
                             const Tensor& v, float scale) {
  const int me = group_.rank();
  PD_REQUIRE(k.size(1) == shard_.count(me), "patch-parallel attention: ", k.size(1), " rows of K on rank ", me,
             ", which owns ", shard_.count(me));
  auto it = layers_.find(layer);
  if (it == layers_.end()) {
    PD_REQUIRE(synchronous_, "patch parallel: the first step must be synchronous (a warm-up step) to fill the "
               "other ranks' K/V");
    Layer fresh;
    std::tie(fresh.k, fresh.v) = make_buffers(be, k, shard_.length(), k.size(2));
    it = layers_.emplace(layer, std::move(fresh)).first;
  }
  Layer& l = it->second;
  // Last step's exchange of this block: the other ranks' rows have landed, and ours may be overwritten.
  if (l.pending) {
    l.pending->wait();
    l.pending.reset();
  }
  be.copy(l.k.slice(1, shard_.start(me), shard_.count(me)), k);
  be.copy(l.v.slice(1, shard_.start(me), shard_.count(me)), v);
  if (synchronous_) {
    exchange(l)->wait();
    attend_buffer(be, out, q, l.k, l.v, scale);
  } else {
    attend_buffer(be, out, q, l.k, l.v, scale);
    l.pending = exchange(l);
  }
}

void PatchParallelKv::finish() {
  for (auto& [layer, l] : layers_) {
    if (!l.pending) continue;
    auto pending = std::move(l.pending);
    pending->wait();
  }
}

}  // namespace paradit
