#include "paradit/parallel/usp_attention.h"

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
  Tensor y = be.empty({x.size(0), blk.length(), heads.count(u), x.size(3)}, x.dtype());
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

}  // namespace

void usp_attention(Backend& be, Communicator& ulysses, Communicator& ring, const SequenceShard& shard,
                   const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
                   float scale) {
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
    ring_attention(be, ring, kv_lengths, out, lse, q, k, v, scale);
    return;
  }

  const BlockLayout blk{shard, U, ring.rank()};
  const SequenceShard heads(H, U);
  const Tensor qb = ulysses_scatter_heads(be, ulysses, blk, heads, q);
  const Tensor kb = ulysses_scatter_heads(be, ulysses, blk, heads, k);
  const Tensor vb = ulysses_scatter_heads(be, ulysses, blk, heads, v);
  const Tensor ob = be.empty(qb.shape(), out.dtype());
  const Tensor lb = lse.defined() ? be.empty({B, qb.size(2), blk.length()}, DType::kF32) : Tensor();
  ring_attention(be, ring, kv_lengths, ob, lb, qb, kb, vb, scale);
  ulysses_gather_heads(ulysses, blk, heads, out, ob, 1, 2);
  if (lse.defined()) ulysses_gather_heads(ulysses, blk, heads, lse, lb, 2, 1);
}

}  // namespace paradit
