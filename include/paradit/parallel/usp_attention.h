// USP attention: sequence-parallel exact attention, Ulysses (all-to-all) × Ring (K/V passed around).
//
// The sequence (for MMDiT the joint [text; image] sequence) is cut over the SP group by SequenceShard, SP rank
// s = ulysses rank + U·ring rank holding shard s. Ulysses gathers the shards of its U ranks (one ring block) and
// scatters the heads (SequenceShard over heads: counts need not divide, a rank may get none); Ring then runs
// over the R blocks; an inverse all-to-all brings each rank its own tokens with all heads back. Attention is
// invariant to the order of keys, so how text and image tokens fall on ranks does not matter: every key is
// counted once, whatever the lengths.
#pragma once

#include <memory>
#include <utility>
#include <vector>

#include "paradit/backend/backend.h"
#include "paradit/comm/communicator.h"
#include "paradit/parallel/ring_attention.h"
#include "paradit/parallel/sequence_shard.h"

namespace paradit {

// shard: the whole sequence's cut over U·R parts. q, k, v, out [B, shard.count(s), H, d] on be's device, any
// strides with a contiguous last dimension; lse, if defined, f32 [B, H, shard.count(s)]. Gives what
// Backend::attention would give for this rank's rows of the unsharded sequence. ring_kv: how Ring moves the
// key/value blocks (ring_attention), the same on every rank.
void usp_attention(Backend& be, Communicator& ulysses, Communicator& ring, const SequenceShard& shard,
                   const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
                   float scale, RingKv ring_kv = RingKv::kPass);

// The same with q, k and v side by side, qkv [B, shard.count(s), 3, H, d] (a fused QKV projection's output):
// Ulysses then moves all three together. head_chunks > 1 pipelines it over that many chunks of each rank's
// heads — chunk c's attention runs while chunk c + 1 arrives and chunk c − 1 goes back. Every rank of the SP
// group passes the same value.
void usp_attention(Backend& be, Communicator& ulysses, Communicator& ring, const SequenceShard& shard,
                   const Tensor& out, const Tensor& lse, const Tensor& qkv, float scale, int head_chunks = 1,
                   RingKv ring_kv = RingKv::kPass);

// The packed form in steps, so that the caller's own GPU work runs beside the transfers: the constructor posts
// q, k and v on their way (Ring alone with RingKv::kGather: k and v to every ring rank, all keys then attended in
// one call); attend() attends as they arrive and posts each rank's rows on their way back; finish() waits until
// they are in out and lse (calling attend() first if the caller did not). Work queued between attend()
// and finish() that does not read out runs beside the return transfer. qkv, out and lse must live until finish();
// every rank of the group makes the calls at the same point of its sequence of collectives.
//
// row_parts > 1: the rows of qkv are not all written yet. The constructor posts nothing; the caller writes the
// rows of part i (part_rows(i): this rank's rows cut in row_parts even parts) and calls post_part(i), for i = 0, 1,
// … in turn, so that part i travels while part i + 1 is computed. Every rank passes the same row_parts.
class PostedUspAttention {
 public:
  PostedUspAttention(Backend& be, Communicator& ulysses, Communicator& ring, const SequenceShard& shard,
                     const Tensor& out, const Tensor& lse, const Tensor& qkv, float scale, int head_chunks = 1,
                     RingKv ring_kv = RingKv::kPass, int row_parts = 1);
  ~PostedUspAttention();
  PostedUspAttention(const PostedUspAttention&) = delete;
  PostedUspAttention& operator=(const PostedUspAttention&) = delete;

  // Part i of this rank's rows: {first row, row count}.
  std::pair<int64_t, int64_t> part_rows(int i) const;
  void post_part(int i);
  void attend();
  void finish();

 private:
  // Ring alone, gathered: this rank's k and v to every other ring rank, theirs into all_k_ / all_v_.
  void post_ring_gather();
  // Chunk c of Ulysses rank p's heads: where it starts among all heads, and how many it has.
  int64_t chunk_start(int p, int c) const;
  int64_t chunk_count(int p, int c) const;

  Backend& be_;
  Communicator &ulysses_, &ring_;
  SequenceShard shard_;
  Tensor out_, lse_, qkv_;
  float scale_;
  int chunks_, row_parts_;
  RingKv ring_kv_;
  int posted_parts_ = 0;
  std::vector<Tensor> arrived_;  // per chunk: [B, ring block, 3, the chunk's heads of this rank, d]
  std::vector<std::unique_ptr<CommRequest>> scatter_;  // per chunk c and row part i, at c · row_parts + i
  std::vector<std::unique_ptr<CommRequest>> gather_;   // per chunk
  Tensor all_k_, all_v_;  // Ring alone, gathered: every rank's keys and values, [B, whole sequence, H, d]
  std::unique_ptr<CommRequest> gathered_kv_;
  bool attended_ = false, finished_ = false;
};

}  // namespace paradit
