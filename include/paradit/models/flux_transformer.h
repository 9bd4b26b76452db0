// FluxTransformer2DModel (FLUX.1-dev / -schnell), written once against the Backend op set.
#pragma once

#include <memory>
#include <vector>

#include "paradit/backend/backend.h"
#include "paradit/comm/communicator.h"
#include "paradit/io/flux_checkpoint.h"
#include "paradit/parallel/ring_attention.h"

namespace paradit {

// Sequence parallelism of one forward (DESIGN.md, "Where parallelism enters the model"). The ranks of an SP
// group, Ulysses × Ring, share the joint sequence [text; image] of T + N tokens, cut by SequenceShard(T + N, U·R):
// SP rank s = ulysses.rank() + U·ring.rank() holds part s — text rows, image rows, both, or (with more ranks than
// tokens) none. Every op of the model but attention works token by token, so it runs on the local rows alone;
// attention is usp_attention over the group. Neither T, N nor the head count needs to divide anything.
//
// Tensor parallelism (FluxTensorShard) composes with it: the ranks of a tp group hold the same rows and each a
// share of every block's heads and MLP columns; Ulysses then splits a rank's own heads further.
struct FluxParallel {
  Communicator* ulysses = nullptr;  // both null, or both set: no sequence parallelism
  Communicator* ring = nullptr;
  // Tensor parallel group of a model loaded with FluxTensorShard{tp->rank(), tp->size()}; null for an unsharded
  // model.
  Communicator* tp = nullptr;
  // Ulysses' all-to-all pipelined over this many chunks of heads (usp_attention's head_chunks).
  int head_chunks = 1;
  // The whole sequence-parallel group (ulysses × ring), over which work every rank would repeat is shared out
  // (the adaLN modulations); null: the Ulysses group alone.
  Communicator* sp = nullptr;
  // How Ring moves the key/value blocks (ring_attention's RingKv).
  RingKv ring_kv = RingKv::kPass;

  int parts() const { return ulysses ? ulysses->size() * ring->size() : 1; }
  // The group that shares out work every rank would repeat: sp, or the Ulysses group alone.
  Communicator* sharing() const { return sp ? sp : ulysses; }
  int part() const { return ulysses ? ulysses->rank() + ulysses->size() * ring->rank() : 0; }
};

// The share of the transformer's weights that tensor-parallel rank `rank` of `size` holds (Megatron-style, heads
// included): of every block, attention heads SequenceShard(H, size) part rank — their q, k, v rows and the same
// columns of the output projection — and MLP columns SequenceShard(4D, size) part rank — rows of the first MLP
// linear, columns of the second; of every adaLN modulation linear, rows SequenceShard(width, size) part rank.
// The biases of the row-parallel linears (proj, mlp.2, linear2) are held by rank 0 alone, so the sum over the
// ranks adds them once. Embedders, norms and the final projection (small) are whole on every rank. Counts need
// not divide: with more ranks than heads some ranks hold none, and only their MLP share.
struct FluxTensorShard {
  int rank = 0, size = 1;
};

// The rows of the joint sequence that SP part `part` of `parts` holds: a contiguous range, text rows first.
struct FluxShardRows {
  int64_t text_start = 0, text_count = 0;    // rows of the text sequence [0, T)
  int64_t image_start = 0, image_count = 0;  // rows of the image sequence [0, N)
};
FluxShardRows flux_shard_rows(int64_t text_tokens, int64_t image_tokens, int parts, int part);

// One forward's inputs. Tensors are on the backend's device in compute dtype unless stated. In a
// sequence-parallel forward, hidden_states and encoder_hidden_states hold only this rank's rows (flux_shard_rows:
// [B, image_count, ·] and [B, text_count, ·]) while img_ids and txt_ids describe the whole sequence.
struct FluxInputs {
  Tensor hidden_states;          // [B, N, in_channels], packed latents
  Tensor encoder_hidden_states;  // [B, T, joint_attention_dim], T5 output
  Tensor pooled_projections;     // [B, pooled_projection_dim], CLIP pooled
  std::vector<float> timestep;   // [B], σ as the pipeline passes it (the model embeds 1000·σ)
  std::vector<float> guidance;   // [B], guidance scale (dev only; the model embeds 1000·g)
  Tensor img_ids;                // host f32 [N, 3]
  Tensor txt_ids;                // host f32 [T, 3]
  // The index of this forward's conditioning among those of FluxTransformer::plan_conditionings, whose block
  // modulations it then takes from the plan; −1: it computes its own.
  int planned = -1;
};

// What a forward's adaLN modulations depend on: FluxInputs' pooled projections, timestep and guidance.
struct FluxConditioning {
  Tensor pooled_projections;     // [B, pooled_projection_dim]
  std::vector<float> timestep;   // [B]
  std::vector<float> guidance;   // [B] (dev) or empty
};

// The transformer blocks a model holds: [begin, end) of the list double blocks 0..num_layers−1, then single
// blocks (index num_layers + j). A PipeFusion stage holds one contiguous range and only its weights; the
// embedders and the final layer (small) are held by every stage. end < 0: through the last block.
struct FluxBlockRange {
  int begin = 0, end = -1;
  int end_or(int blocks) const { return end < 0 ? blocks : end; }
};

// Attention against K/V kept across forwards (PipeFusion's and patch parallel's stale K/V,
// models/flux_stale_kv.h): the forward gives each block's fresh q, k, v of its rows and the attention decides which
// keys they meet. `layer` is the block index of FluxBlockRange. q, k, v, out: [B, rows, H, d] (H: this rank's heads
// under tensor parallelism; a rank that holds none is never called).
class FluxKvAttention {
 public:
  virtual ~FluxKvAttention() = default;
  virtual void attend(Backend& be, int layer, const Tensor& out, const Tensor& q, const Tensor& k, const Tensor& v,
                      float scale) = 0;
};

// One forward of the model's blocks over a contiguous range of rows of the joint [text; image] sequence: a
// PipeFusion patch at one stage, or a patch-parallel rank's band. The rows hold `text_rows` text rows (starting
// at first_row) then `image_rows` image rows.
struct FluxPartInputs {
  int64_t first_row = 0, text_rows = 0, image_rows = 0;
  Tensor hidden_states;          // the first stage (blocks begin at 0): [B, image_rows, in_channels]
  Tensor encoder_hidden_states;  // the first stage: [B, text_rows, joint_attention_dim]
  Tensor stream;                 // later stages: [B, text_rows + image_rows, hidden] from the stage before (used
                                 // in place)
  Tensor pooled_projections;     // [B, pooled_projection_dim]
  std::vector<float> timestep, guidance;  // [B] each, as FluxInputs
  Tensor img_ids, txt_ids;                // the whole sequence's, host f32
  FluxKvAttention* attention = nullptr;   // required: every block's attention goes through it
  Communicator* tp = nullptr;             // a sharded model's tp group, as FluxParallel::tp
};

class FluxTransformer {
 public:
  // Uploads the weights of the checkpoint to the backend in its compute dtype: the blocks of `blocks` only, and
  // with a shard only this rank's slices of them, read from the (memory-mapped) checkpoint: a model too big for one
  // device loads over several.
  static std::unique_ptr<FluxTransformer> load(Backend& backend, const FluxCheckpoint& checkpoint,
                                               FluxTensorShard shard = {}, FluxBlockRange blocks = {});
  // Random weights (Backend::fill_random) for benchmarks: same shapes, memory and arithmetic as the real model.
  // A shard holds the slices of the unsharded model's tensors (each made whole on the device, one at a time, and
  // cut), so every tp degree computes the same function.
  static std::unique_ptr<FluxTransformer> random(Backend& backend, const FluxConfig& config, uint64_t seed,
                                                 FluxTensorShard shard = {}, FluxBlockRange blocks = {});

  virtual ~FluxTransformer() = default;
  const FluxConfig& config() const { return config_; }
  const FluxTensorShard& tensor_shard() const { return shard_; }
  // Bytes of weights held on the device (this rank's share under tensor parallelism).
  virtual size_t weight_bytes() const = 0;

  // Predicted velocity [B, N, out_channels] in compute dtype.
  virtual Tensor forward(const FluxInputs& in) = 0;
  // The same, parallel: a collective of every rank of parallel's SP and tp groups, each passing its rows (the
  // ranks of a tp group the same rows). Returns this rank's image rows of the velocity,
  // [B, image_count, out_channels]. A sharded model (tensor_shard().size > 1) needs parallel.tp, of that size.
  virtual Tensor forward(const FluxInputs& in, const FluxParallel& parallel) = 0;
  // The held blocks over some rows (FluxPartInputs). Returns the stream [B, rows, hidden] after the last held
  // block, or — when the model holds the last block — the velocity of the image rows [B, image_rows, out_channels].
  // Forwards of full models only (forward() above) need every block.
  virtual Tensor forward_part(const FluxPartInputs& in) = 0;
  virtual FluxBlockRange blocks() const = 0;  // end resolved

  // The conditionings of the forwards a denoising loop is about to run (every step's, every branch's): every held
  // block's adaLN modulations for all of them come from one GEMM per modulation weight, so the 6.4 GB of those
  // weights (FLUX.1) are read once per request instead of once per step. A forward with FluxInputs::planned = i
  // takes conditionings[i]'s: its timestep and guidance must be equal (checked), its pooled projections must hold
  // the same values (not checked: the caller's promise). `parallel`: the sequence-parallel group of the forwards,
  // whose ranks share the work (a collective of it, like forward); null when each forward holds the whole
  // sequence. Replaces the previous plan; clear_plan() frees it. Under tensor parallelism nothing is planned and
  // forwards compute their own.
  virtual void plan_conditionings(const std::vector<FluxConditioning>& conditionings,
                                  const FluxParallel* parallel) = 0;
  virtual void clear_plan() = 0;

 protected:
  FluxTransformer(FluxConfig config, FluxTensorShard shard) : config_(config), shard_(shard) {}
  FluxConfig config_;
  FluxTensorShard shard_;
};

}  // namespace paradit
