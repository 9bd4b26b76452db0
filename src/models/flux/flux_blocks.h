// The two transformer block kinds of FLUX, over one joint sequence buffer (text rows first, then image rows).
//
// Both streams live in z [B, T+N, D] from the input projections on: a double-stream block works on its row
// slices, a single-stream block on all of it, so nothing is ever concatenated or split by a copy. Under sequence
// parallelism the buffers hold this rank's rows of the joint sequence (T and N count its text and image rows,
// either may be 0) and attention reaches the other ranks' rows through usp_attention. Under tensor parallelism
// the buffers after a column-parallel GEMM (qkv, the attention output, the MLP hidden) hold this rank's heads
// and MLP columns only; each row-parallel GEMM gives a partial sum that one all-reduce per half block completes.
#pragma once

#include <array>
#include <vector>

#include "models/flux/flux_weights.h"
#include "paradit/backend/backend.h"
#include "paradit/models/flux_transformer.h"

namespace paradit::flux {

// Activation buffers of one forward, allocated once and reused by every block.
//
// Residual updates are deferred: the GEMM that closes a block half writes its output to `delta` (under tensor
// parallelism a partial sum, all-reduced there) and leaves z += gate ⊙ delta pending, to be applied by the
// LayerNorm that opens the next half (gated_add_layer_norm_modulate: one pass over z fewer than the two ops
// apart). The pending gates live in the modulation set of the block that left them, so blocks alternate between
// two sets (begin_block) and the next block's modulation GEMVs cannot overwrite a gate still to be applied.
struct Workspace {
  Workspace(Backend& backend, const FluxConfig& config, const TensorParallelLayout& layout, int64_t batch,
            int64_t text_tokens, int64_t image_tokens);

  int64_t T, N;       // text and image tokens (this rank's rows of them)
  int64_t D, H, d;    // width, heads (this rank's), head dim
  int64_t A, M;       // this rank's attention width H·d and MLP columns (D and 4D without tensor parallelism)
  Tensor z;           // [B, T+N, D]: the residual streams
  Tensor zn;          // [B, T+N, D]: modulated LayerNorm of z, the input of the next GEMMs
  Tensor delta;       // [B, T+N, D]: the output (partial sums under tensor parallelism) whose gated residual
                      // update is pending
  Tensor qkv;         // [B, T+N, 3A]: q | k | v, each head-major (undefined when this rank holds no head)
  Tensor cat;         // [B, T+N, A+M]: attention output in columns [0, A), MLP hidden in [A, A+M)
  Tensor mod_sets[2][2];   // [set][stream] [B, 6D]: modulation of the text (0) and image (1) streams
  int mod_set = 0;         // the set of the current block
  Tensor pending_gate[2];  // [stream] [B, D]: gate of the update pending on that stream's rows, or undefined
  Tensor mod_local;   // [B, ≤ 6D]: this rank's piece of a modulation before the all-gather (tensor parallel)
  // Every held block's {text, image} modulation, computed before the blocks run (use_modulations), from block
  // index pre_first on; empty when each block computes its own. A single block's is the image slot.
  std::vector<std::array<Tensor, 2>> pre_mods;
  int pre_first = 0;
  Tensor silu_temb;   // [B, D]: SiLU(temb), the input of every modulation linear
  Tensor cos, sin;    // f32 [T+N, d]: RoPE tables
  // Sequence parallelism: null when this rank holds the whole sequence; else its group and the length of the
  // whole joint sequence.
  const FluxParallel* parallel = nullptr;
  int64_t sequence = 0;
  // Tensor parallelism: the tp group, null when this rank holds every weight.
  Communicator* tp = nullptr;
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
  // q (0), k (1) or v (2) of this rank's heads, [B, rows, H, d] (rows of qkv_rows, a row slice of qkv).
  Tensor head_chunk(const Tensor& qkv_rows, int64_t i) const {
    return qkv_rows.slice(-1, i * A, A).unflatten(2, H, d);
  }
  Tensor attention_out() const { return cat.slice(2, 0, A); }
  Tensor mlp_hidden() const { return cat.slice(2, A, M); }

  // Switches to the other modulation set; returns {text, image} modulation buffers of the new block (single
  // blocks and the final layer use a prefix of the image one).
  std::array<Tensor, 2> begin_block() {
    mod_set ^= 1;
    return {mod_sets[mod_set][0], mod_sets[mod_set][1]};
  }
  // The precomputed modulations of block `layer`, or none (empty array) when blocks compute their own.
  const std::array<Tensor, 2>* precomputed(int block) const {
    return pre_mods.empty() ? nullptr : &pre_mods[size_t(block - pre_first)];
  }
  // zn = LN(z)·(1 + scale) + shift on rows [start, start + length), applying first the residual update pending on
  // those rows (each stream's part with its own gate).
  void norm_modulate(Backend& backend, int64_t start, int64_t length, const Tensor& shift, const Tensor& scale);
  // Leaves z += gate ⊙ delta pending on rows [start, start + length) (the rows of whole streams).
  void defer_residual(int64_t start, int64_t length, const Tensor& gate);
  // Applies every pending update to z (before z is read other than by norm_modulate).
  void flush(Backend& backend);
};

inline constexpr float kNormEps = 1e-6f;  // every LayerNorm and q/k RMSNorm of FLUX

// mod = silu_temb·wᵀ + b, mod [B, width]: under tensor parallelism this rank's rows of w give its piece of mod
// (SequenceShard(width, tp)), all-gathered.
void modulation(Backend& backend, Workspace& ws, const Tensor& mod, const Linear& w);

// Every modulation of blocks [first, end) for every row of silu_temb ([R, D]: the B rows of one forward, or of
// several forwards one after the other), computed before the blocks run, one GEMM per modulation weight: without
// tensor parallelism only. With a group (the SP group, whose ranks share the conditionings) each rank computes its
// SequenceShard of every modulation's columns (its rows of the weights) and one all-gather assembles them, instead
// of every rank computing all of them; without one (or when a width does not divide over it) this rank computes
// everything.
struct ModulationPlan {
  Tensor doubles;  // [2 · double blocks, R, 6D]: text then image stream of each double block
  Tensor singles;  // [single blocks, R, 3D]
  int first = 0, n_double = 0, n_single = 0;
  int64_t rows = 0;
  bool defined() const { return rows > 0; }
};
ModulationPlan plan_modulations(Backend& backend, const Tensor& silu_temb, const std::vector<DoubleBlockWeights>& doubles,
                                const std::vector<SingleBlockWeights>& singles, int first, int end, Communicator* group);
// Points ws.pre_mods at rows [row0, row0 + B) of the plan (views: the plan must outlive the forward).
void use_modulations(Workspace& ws, const ModulationPlan& plan, int64_t row0, int64_t B);

void double_block(Backend& backend, const DoubleBlockWeights& w, Workspace& ws);
void single_block(Backend& backend, const SingleBlockWeights& w, Workspace& ws);

}  // namespace paradit::flux
