#include "paradit/parallel/usp_attention.h"

#include <memory>
#include <vector>

#include "paradit/core/status.h"
#include "paradit/parallel/ring_attention.h"

namespace paradit {

namespace {

// Where the tokens of this rank's ring block come from: the shards of SP ranks ring·U .. ring·U + U − 1.
struct BlockLayout {
  const SequenceShard& shard;
  int U, ring;
  int64_t begin() const { return shard.start(ring * U); }
  int64_t length() const { return shard.start((ring + 1) * U) - begin(); }
  int64_t offset(int u) const { return shard.start(ring * U + u) - begin(); }  // of Ulysses rank u's shard
  int64_t count(int u) const { return shard.count(ring * U + u); }
};

// x [B, S_me, H, d] → [B, block length, my heads, d]: Ulysses rank p gets its heads of my tokens.
Tensor ulysses_scatter_heads(Backend& be, Communicator& ulysses, const BlockLayout& blk, const SequenceShard& heads,
                             const Tensor& x) {
  const int U = ulysses.size(), u = ulysses.rank();
  Shape shape = x.shape();
  shape[1] = blk.length();
  shape[2] = heads.count(u);
  Tensor y = be.empty(shape, x.dtype());
  std::vector<Tensor> send(U), recv(U);
  for (int p = 0; p < U; ++p) {
    send[p] = x.slice(2, heads.start(p), heads.count(p));
    recv[p] = y.slice(1, blk.offset(p), blk.count(p));
  }
  ulysses.all_to_all_v(recv, send);
  return y;
}

// The inverse: y [B, block length, my heads, d] → x [B, S_me, H, d] (seq_dim 1, head_dim 2), or for the LSE
// y [B, my heads, block length] → x [B, H, S_me] (seq_dim 2, head_dim 1).
void ulysses_gather_heads(Communicator& ulysses, const BlockLayout& blk, const SequenceShard& heads, const Tensor& x,
                          const Tensor& y, int seq_dim, int head_dim) {
  const int U = ulysses.size();
  std::vector<Tensor> send(U), recv(U);
  for (int p = 0; p < U; ++p) {
    send[p] = y.slice(seq_dim, blk.offset(p), blk.count(p));
    recv[p] = x.slice(head_dim, heads.start(p), heads.count(p));
  }
  ulysses.all_to_all_v(recv, send);
}

// With this rank's heads of its ring block's tokens in qb, kb, vb [B, block, my heads, d] (after the Ulysses
// scatter): Ring attention over the blocks, then the inverse all-to-all into out (and lse) for this rank's tokens.
void run_block_attention(Backend& be, Communicator& ulysses, Communicator& ring, const SequenceShard& shard,
                         const Tensor& out, const Tensor& lse, const Tensor& qb, const Tensor& kb, const Tensor& vb,
                         float scale, RingKv ring_kv) {
  const int U = ulysses.size(), R = ring.size();
  std::vector<int64_t> kv_lengths(R);
  for (int j = 0; j < R; ++j) kv_lengths[j] = BlockLayout{shard, U, j}.length();
  const BlockLayout blk{shard, U, ring.rank()};
  const SequenceShard heads(out.size(2), U);
  const Tensor ob = be.empty(qb.shape(), out.dtype());
  const Tensor lb = lse.defined() ? be.empty({qb.size(0), qb.size(2), blk.length()}, DType::kF32) : Tensor();
  ring_attention(be, ring, kv_lengths, ob, lb, qb, kb, vb, scale, ring_kv);
  ulysses_gather_heads(ulysses, blk, heads, out, ob, 1, 2);
  if (lse.defined()) ulysses_gather_heads(ulysses, blk, heads, lse, lb, 2, 1);
}

}  // namespace

// Packed qkv [B, S_me, 3, H, d] with the heads cut in `chunks` (chunk c of Ulysses rank p: part c of p's heads):
// the constructor posts every chunk's all-to-all; finish() runs, for each chunk in turn, attention over the ring
// blocks as soon as its heads have arrived, and posts its inverse all-to-all behind it. On a device transport the
// transfers run beside whatever the GPU does meanwhile: the caller's work between the two calls, the attention
// of the chunk before.
PostedUspAttention::PostedUspAttention(Backend& be, Communicator& ulysses, Communicator& ring,
                                       const SequenceShard& shard, const Tensor& out, const Tensor& lse,
                                       const Tensor& qkv, float scale, int head_chunks, RingKv ring_kv, int row_parts)
    : be_(be), ulysses_(ulysses), ring_(ring), shard_(shard), out_(out), lse_(lse), qkv_(qkv), scale_(scale),
      chunks_(head_chunks), row_parts_(row_parts), ring_kv_(ring_kv) {
  PD_REQUIRE(qkv.defined() && qkv.dim() == 5 && qkv.size(2) == 3, "usp_attention: qkv must be [B, S, 3, H, d], got ",
             qkv.defined() ? qkv.desc() : std::string("an undefined tensor"));
  PD_REQUIRE(head_chunks >= 1, "usp_attention: head_chunks must be at least 1, got ", head_chunks);
  PD_REQUIRE(row_parts >= 1, "usp_attention: row_parts must be at least 1, got ", row_parts);
  const int U = ulysses.size(), R = ring.size();
  if (U == 1) {
    // Ring alone with its blocks gathered and every row in hand: every block to every rank now, beside the
    // caller's work, and all keys attended in one call by attend(). Otherwise the blocks move in attend(), passed
    // each beside a block's attention or gathered beside the own block's.
    if (ring_kv == RingKv::kGather && R > 1 && row_parts == 1) post_ring_gather();
    return;
  }
  // The checks of the general form, then q, k and v together: each rank's heads of every token, packed
  // [B, S, 3, heads, d] per peer, landing in rows of one [B, block, 3, my heads, d] buffer per chunk.
  PD_REQUIRE(shard.parts() == U * R, "usp_attention: the sequence is cut in ", shard.parts(),
             " parts but the SP group is ulysses ", U, " × ring ", R);
  const int s = ulysses.rank() + U * ring.rank(), u = ulysses.rank();
  const int64_t B = qkv.size(0), H = qkv.size(3), S = shard.count(s);
  const Shape local = {B, S, H, qkv.size(4)};
  PD_REQUIRE(qkv.size(1) == S && out.shape() == local, "usp_attention: SP rank ", s, " holds ", S,
             " tokens, so qkv must be [B, ", S, ", 3, H, d] and out ", shape_str(local), ", got ", qkv.desc(), " and ",
             out.desc());
  PD_REQUIRE(!lse.defined() || (lse.dtype() == DType::kF32 && lse.shape() == Shape{B, H, S}),
             "usp_attention: lse must be f32", shape_str({B, H, S}), ", got ", lse.desc());
  const BlockLayout blk{shard_, U, ring.rank()};
  arrived_.resize(size_t(chunks_));
  for (int c = 0; c < chunks_; ++c)
    arrived_[size_t(c)] = be.empty({B, blk.length(), 3, chunk_count(u, c), qkv.size(4)}, qkv.dtype());
  scatter_.resize(size_t(chunks_ * row_parts_));
  if (row_parts_ == 1) post_part(0);
}

std::pair<int64_t, int64_t> PostedUspAttention::part_rows(int i) const {
  const SequenceShard parts(qkv_.size(1), row_parts_);
  return {parts.start(i), parts.count(i)};
}

void PostedUspAttention::post_part(int i) {
  PD_REQUIRE(i == posted_parts_ && i < row_parts_, "usp_attention: row part ", i, " posted out of turn (",
             posted_parts_, " of ", row_parts_, " posted)");
  ++posted_parts_;
  const int U = ulysses_.size();
  if (U == 1) return;
  const BlockLayout blk{shard_, U, ring_.rank()};
  const auto [start, count] = part_rows(i);
  for (int c = 0; c < chunks_; ++c) {
    std::vector<P2POp> ops;
    for (int p = 0; p < U; ++p) {
      // Part i of Ulysses rank p's rows, cut as p cuts them, lands at its place among p's rows of the block.
      const SequenceShard theirs(blk.count(p), row_parts_);
      ops.push_back(P2POp::send(qkv_.slice(1, start, count).slice(-2, chunk_start(p, c), chunk_count(p, c)), p));
      ops.push_back(
          P2POp::recv(arrived_[size_t(c)].slice(1, blk.offset(p) + theirs.start(i), theirs.count(i)), p));
    }
    scatter_[size_t(c * row_parts_ + i)] = ulysses_.start(std::move(ops));
  }
}

PostedUspAttention::~PostedUspAttention() = default;

void PostedUspAttention::post_ring_gather() {
  const int R = ring_.size(), r = ring_.rank();
  PD_REQUIRE(shard_.parts() == R, "usp_attention: the sequence is cut in ", shard_.parts(), " parts but the ring has ",
             R, " ranks");
  const Tensor k = qkv_.select(2, 1), v = qkv_.select(2, 2);
  const int64_t B = qkv_.size(0), H = qkv_.size(3), D = qkv_.size(4);
  PD_REQUIRE(qkv_.size(1) == shard_.count(r), "usp_attention: ring rank ", r, " holds ", shard_.count(r),
             " tokens, so qkv must be [B, ", shard_.count(r), ", 3, H, d], got ", qkv_.desc());
  all_k_ = be_.empty({B, shard_.length(), H, D}, k.dtype());
  all_v_ = be_.empty({B, shard_.length(), H, D}, v.dtype());
  std::vector<P2POp> ops;
  for (int j = 0; j < R; ++j) {
    if (j == r) continue;
    if (shard_.count(r) > 0) {
      ops.push_back(P2POp::send(k, j));
      ops.push_back(P2POp::send(v, j));
    }
    if (shard_.count(j) > 0) {
      ops.push_back(P2POp::recv(all_k_.slice(1, shard_.start(j), shard_.count(j)), j));
      ops.push_back(P2POp::recv(all_v_.slice(1, shard_.start(j), shard_.count(j)), j));
    }
  }
  gathered_kv_ = ring_.start(std::move(ops));
  be_.copy(all_k_.slice(1, shard_.start(r), shard_.count(r)), k);
  be_.copy(all_v_.slice(1, shard_.start(r), shard_.count(r)), v);
}

int64_t PostedUspAttention::chunk_start(int p, int c) const {
  const SequenceShard heads(qkv_.size(3), ulysses_.size());
  return heads.start(p) + SequenceShard(heads.count(p), chunks_).start(c);
}

int64_t PostedUspAttention::chunk_count(int p, int c) const {
  return SequenceShard(SequenceShard(qkv_.size(3), ulysses_.size()).count(p), chunks_).count(c);
}

void PostedUspAttention::attend() {
  PD_REQUIRE(!attended_, "usp_attention: attend() called twice");
  attended_ = true;
  const int U = ulysses_.size(), u = ulysses_.rank(), R = ring_.size();
  if (U == 1) {
    if (gathered_kv_) {
      gathered_kv_->wait();
      if (out_.numel() > 0) be_.attention(out_, lse_, qkv_.select(2, 0), all_k_, all_v_, scale_);
      return;
    }
    usp_attention(be_, ulysses_, ring_, shard_, out_, lse_, qkv_.select(2, 0), qkv_.select(2, 1), qkv_.select(2, 2),
                  scale_, ring_kv_);
    return;
  }
  const int64_t B = qkv_.size(0), D = qkv_.size(4);
  const BlockLayout blk{shard_, U, ring_.rank()};
  std::vector<int64_t> kv_lengths(R);
  for (int j = 0; j < R; ++j) kv_lengths[j] = BlockLayout{shard_, U, j}.length();
  PD_REQUIRE(posted_parts_ == row_parts_, "usp_attention: attend() with ", posted_parts_, " of ", row_parts_,
             " row parts posted");
  gather_.resize(static_cast<size_t>(chunks_));
  for (int c = 0; c < chunks_; ++c) {
    for (int i = 0; i < row_parts_; ++i) scatter_[size_t(c * row_parts_ + i)]->wait();
    const Tensor& x = arrived_[size_t(c)];
    const Tensor ob = be_.empty({B, blk.length(), chunk_count(u, c), D}, out_.dtype());
    const Tensor lb = lse_.defined() ? be_.empty({B, chunk_count(u, c), blk.length()}, DType::kF32) : Tensor();
    ring_attention(be_, ring_, kv_lengths, ob, lb, x.select(2, 0), x.select(2, 1), x.select(2, 2), scale_, ring_kv_);
    std::vector<P2POp> ops;
    for (int p = 0; p < U; ++p) {
      ops.push_back(P2POp::send(ob.slice(1, blk.offset(p), blk.count(p)), p));
      ops.push_back(P2POp::recv(out_.slice(2, chunk_start(p, c), chunk_count(p, c)), p));
      if (lse_.defined()) {
        ops.push_back(P2POp::send(lb.slice(2, blk.offset(p), blk.count(p)), p));
        ops.push_back(P2POp::recv(lse_.slice(1, chunk_start(p, c), chunk_count(p, c)), p));
      }
    }
    gather_[size_t(c)] = ulysses_.start(std::move(ops));
  }
}

void PostedUspAttention::finish() {
  PD_REQUIRE(!finished_, "usp_attention: finish() called twice");
  finished_ = true;
  if (!attended_) attend();
  for (auto& g : gather_) g->wait();
}

void usp_attention(Backend& be, Communicator& ulysses, Communicator& ring, const SequenceShard& shard,
                   const Tensor& out, const Tensor& lse, const Tensor& qkv, float scale, int head_chunks,
                   RingKv ring_kv) {
  // Nothing to overlap a posted exchange with here: Ring alone attends its own block beside the exchange instead.
  if (ulysses.size() == 1) {
    PD_REQUIRE(qkv.defined() && qkv.dim() == 5 && qkv.size(2) == 3,
               "usp_attention: qkv must be [B, S, 3, H, d], got ",
               qkv.defined() ? qkv.desc() : std::string("an undefined tensor"));
    usp_attention(be, ulysses, ring, shard, out, lse, qkv.select(2, 0), qkv.select(2, 1), qkv.select(2, 2), scale,
                  ring_kv);
    return;
  }
  PostedUspAttention(be, ulysses, ring, shard, out, lse, qkv, scale, head_chunks, ring_kv).finish();
}

void usp_attention(Backend& be, Communicator& ulysses, Communicator& ring, const SequenceShard& shard,
                   const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
                   float scale, RingKv ring_kv) {
  const int U = ulysses.size(), R = ring.size();
  const int s = ulysses.rank() + U * ring.rank();
  PD_REQUIRE(shard.parts() == U * R, "usp_attention: the sequence is cut in ", shard.parts(),
             " parts but the SP group is ulysses ", U, " × ring ", R);
  PD_REQUIRE(q.defined() && q.dim() == 4, "usp_attention: q must be [B, S, H, d]");
  const int64_t B = q.size(0), H = q.size(2), D = q.size(3);
  const Shape local = {B, shard.count(s), H, D};
  for (const Tensor* t : {&q, &k, &v, &out})
    PD_REQUIRE(t->defined() && t->shape() == local, "usp_attention: SP rank ", s, " holds tokens [", shard.start(s),
               ", ", shard.end(s), ") of ", shard.length(), ", so q, k, v, out must be ", shape_str(local), ", got ",
               t->defined() ? t->desc() : std::string("an undefined tensor"));
  PD_REQUIRE(!lse.defined() || (lse.dtype() == DType::kF32 && lse.shape() == Shape{B, H, shard.count(s)}),
             "usp_attention: lse must be f32", shape_str({B, H, shard.count(s)}), ", got ", lse.desc());

  std::vector<int64_t> kv_lengths(R);
  for (int j = 0; j < R; ++j) kv_lengths[j] = BlockLayout{shard, U, j}.length();
  if (U == 1) {
    ring_attention(be, ring, kv_lengths, out, lse, q, k, v, scale, ring_kv);
    return;
  }

  const BlockLayout blk{shard, U, ring.rank()};
  const SequenceShard heads(H, U);
  const Tensor qb = ulysses_scatter_heads(be, ulysses, blk, heads, q);
  const Tensor kb = ulysses_scatter_heads(be, ulysses, blk, heads, k);
  const Tensor vb = ulysses_scatter_heads(be, ulysses, blk, heads, v);
  run_block_attention(be, ulysses, ring, shard, out, lse, qb, kb, vb, scale, ring_kv);
}

}  // namespace paradit
