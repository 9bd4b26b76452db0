// The log-sum-exp merge of Ring attention: folds the attention of the queries over one more key/value block into
// the running result. With σ the logistic function, per query row and head,
//   out ← out − σ(block_lse − lse)·(out − block_out),    lse ← lse − log σ(lse − block_lse),
// which is out = (e^lse·out + e^block_lse·block_out) / (e^lse + e^block_lse) and lse = log(e^lse + e^block_lse)
// without overflow. An lse of −∞ (attention over no keys) carries weight zero.
#pragma once

#include "paradit/backend/backend.h"

namespace paradit {

// out f32 [B, S, H, d] and lse f32 [B, H, S] are the accumulators, updated in place; block_out [B, S, H, d]
// and block_lse f32 [B, H, S] are what Backend::attention gave for the block. All on be's device; last
// dimensions contiguous. Host tensors are merged here; other devices go through a host round trip until the
// backends gain a fused merge kernel (it belongs in the attention epilogue).
void lse_merge(Backend& be, const Tensor& out, const Tensor& lse, const Tensor& block_out, const Tensor& block_lse);

}  // namespace paradit
