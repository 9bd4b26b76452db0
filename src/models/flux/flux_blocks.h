// The two transformer block kinds of FLUX, over one joint sequence buffer (text rows first, then image rows).
//
// Both streams live in z [B, T+N, D] from the input projections on: a double-stream block works on its row
// slices, a single-stream block on all of it, so nothing is ever concatenated or split by a copy. Under sequence
// parallelism the buffers hold this rank's rows of the joint sequence (T and N count its text and image rows,
// either may be 0) and attention reaches the other ranks' rows through usp_attention.
#pragma once

#include "models/flux/flux_weights.h"
#include "paradit/backend/backend.h"
#include "paradit/models/flux_transformer.h"

namespace paradit::flux {

// Activation buffers of one forward, allocated once and reused by every block.
struct Workspace {
  Workspace(Backend& backend, const FluxConfig& config, int64_t batch, int64_t text_tokens, int64_t image_tokens);

  int64_t T, N;       // text and image tokens (this rank's rows of them)
  int64_t D, H, d;    // width, heads, head dim
  Tensor z;           // [B, T+N, D]: the residual streams
  Tensor zn;          // [B, T+N, D]: modulated LayerNorm of z, the input of the next GEMMs
  Tensor qkv;         // [B, T+N, 3D]: q | k | v, each head-major
  Tensor cat;         // [B, T+N, 5D]: attention output in columns [0, D), MLP hidden in [D, 5D)
  Tensor mod_img;     // [B, 6D]: modulation of the image stream (single blocks and the final layer use a prefix)
  Tensor mod_txt;     // [B, 6D]: modulation of the text stream
  Tensor silu_temb;   // [B, D]: SiLU(temb), the input of every modulation linear
  Tensor cos, sin;    // f32 [T+N, d]: RoPE tables
  // Sequence parallelism: null when this rank holds the whole sequence; else its group and the length of the
  // whole joint sequence.
  const FluxParallel* parallel = nullptr;
  int64_t sequence = 0;
  // Stale-K/V attention (PipeFusion, patch parallel): when set, every block's attention goes through it, told
  // the block's index.
  FluxKvAttention* kv = nullptr;
  int layer = 0;

  // Rows [start, start + length) of a [B, T+N, ·] buffer.
  static Tensor rows(const Tensor& t, int64_t start, int64_t length) { return t.slice(1, start, length); }
  Tensor txt(const Tensor& t) const { return rows(t, 0, T); }
  Tensor img(const Tensor& t) const { return rows(t, T, N); }
  // Chunk i of width D along the last dimension (the adaLN shift/scale/gate vectors are such chunks).
  Tensor chunk(const Tensor& t, int64_t i) const { return t.slice(-1, i * D, D); }
};

inline constexpr float kNormEps = 1e-6f;  // every LayerNorm and q/k RMSNorm of FLUX

void double_block(Backend& backend, const DoubleBlockWeights& w, Workspace& ws);
void single_block(Backend& backend, const SingleBlockWeights& w, Workspace& ws);

}  // namespace paradit::flux
