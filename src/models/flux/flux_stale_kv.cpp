#include "paradit/models/flux_stale_kv.h"

#include <vector>

#include "paradit/core/status.h"

namespace paradit {

namespace {

// The K/V buffers of one block, made on first use: [B, sequence, H, d] in the dtype of k.
std::pair<Tensor, Tensor> make_buffers(Backend& be, const Tensor& k, int64_t sequence) {
  const Shape shape = {k.size(0), sequence, k.size(2), k.size(3)};
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
  auto it = kv_.find(layer);
  if (it == kv_.end()) it = kv_.emplace(layer, make_buffers(be, k, sequence_)).first;
  const auto& [kb, vb] = it->second;
  if (sp_ == nullptr || sp_->size() == 1) {
    be.copy(kb.slice(1, first_, rows_), k);
    be.copy(vb.slice(1, first_, rows_), v);
  } else {
    // Every SP rank's rows of the patch land at their place in every rank's buffer.
    const SequenceShard cut(rows_, sp_->size());
    std::vector<Tensor> kp(size_t(cut.parts())), vp(size_t(cut.parts()));
    for (int p = 0; p < cut.parts(); ++p) {
      kp[size_t(p)] = kb.slice(1, first_ + cut.start(p), cut.count(p));
      vp[size_t(p)] = vb.slice(1, first_ + cut.start(p), cut.count(p));
    }
    sp_->all_gather_v(kp, k);
    sp_->all_gather_v(vp, v);
  }
  attend_buffer(be, out, q, kb, vb, scale);
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
    std::tie(fresh.k, fresh.v) = make_buffers(be, k, shard_.length());
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
