// Ring attention: exact attention over a sequence whose key/value blocks are spread over the ranks of a ring.
#pragma once

#include <vector>

#include "paradit/backend/backend.h"
#include "paradit/comm/communicator.h"

namespace paradit {

// Rank r of `ring` holds the queries q [B, Sq, H, d] and key/value block r: k, v [B, kv_lengths[r], H, d]
// (blocks may differ in length, some may be empty). Each step sends the block in hand to rank r+1 and receives
// the next from rank r−1, posting the transfer before computing on the block in hand so that it runs behind
// the attention; the per-block results are kept and merged once at the end by Backend::lse_merge. out [B, Sq, H, d] gets
// softmax(scale·q·Kᵀ)·V over all blocks; lse, if defined, f32 [B, H, Sq] gets log Σ exp(scale·q·k) over all keys.
void ring_attention(Backend& be, Communicator& ring, const std::vector<int64_t>& kv_lengths, const Tensor& out,
                    const Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v, float scale);

}  // namespace paradit
