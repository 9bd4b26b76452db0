// Ring attention: exact attention over a sequence whose key/value blocks are spread over the ranks of a ring.
#pragma once

#include <vector>

#include "paradit/backend/backend.h"
#include "paradit/comm/communicator.h"

namespace paradit {

// How the key/value blocks reach the ranks.
enum class RingKv {
  // A true ring: each step sends the block in hand to rank r+1 and receives the next from rank r−1, the transfer
  // posted before the block in hand is attended so that it runs behind the attention; R attention calls, merged
  // once at the end. Two blocks of memory; one link per rank busy at a time (what a multi-node ring wants).
  kPass,
  // Every rank sends its block to every other at once (one grouped exchange, every link busy) while it attends its
  // own, then attends all the others' blocks in one call: two attention calls and a two-way merge, R − 1 blocks
  // of memory. The same keys and the same transfer volume as kPass.
  kGather,
};

// Rank r of `ring` holds the queries q [B, Sq, H, d] and key/value block r: k, v [B, kv_lengths[r], H, d]
// (blocks may differ in length, some may be empty); the blocks travel as `mode` says and the per-block results
// are merged by Backend::lse_merge. out [B, Sq, H, d] gets softmax(scale·q·Kᵀ)·V over all blocks; lse, if
// defined, f32 [B, H, Sq] gets log Σ exp(scale·q·k) over all keys. Every rank passes the same mode.
void ring_attention(Backend& be, Communicator& ring, const std::vector<int64_t>& kv_lengths, const Tensor& out,
                    const Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v, float scale,
                    RingKv mode = RingKv::kPass);

}  // namespace paradit
