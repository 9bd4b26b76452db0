// FluxTransformer2DModel (FLUX.1-dev / -schnell), written once against the Backend op set.
#pragma once

#include <memory>
#include <vector>

#include "paradit/backend/backend.h"
#include "paradit/comm/communicator.h"
#include "paradit/io/flux_checkpoint.h"

namespace paradit {

// Sequence parallelism of one forward (DESIGN.md, "Where parallelism enters the model"). The ranks of an SP
// group, Ulysses × Ring, share the joint sequence [text; image] of T + N tokens, cut by SequenceShard(T + N, U·R):
// SP rank s = ulysses.rank() + U·ring.rank() holds part s — text rows, image rows, both, or (with more ranks than
// tokens) none. Every op of the model but attention works token by token, so it runs on the local rows alone;
// attention is usp_attention over the group. Neither T, N nor the head count needs to divide anything.
struct FluxParallel {
  Communicator* ulysses = nullptr;
  Communicator* ring = nullptr;

  int parts() const { return ulysses->size() * ring->size(); }
  int part() const { return ulysses->rank() + ulysses->size() * ring->rank(); }
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
};

class FluxTransformer {
 public:
  // Uploads every weight of the checkpoint to the backend in its compute dtype.
  static std::unique_ptr<FluxTransformer> load(Backend& backend, const FluxCheckpoint& checkpoint);
  // Random weights (Backend::fill_random) for benchmarks: same shapes, memory and arithmetic as the real model.
  static std::unique_ptr<FluxTransformer> random(Backend& backend, const FluxConfig& config, uint64_t seed);

  virtual ~FluxTransformer() = default;
  const FluxConfig& config() const { return config_; }
  // Bytes of weights held on the device.
  virtual size_t weight_bytes() const = 0;

  // Predicted velocity [B, N, out_channels] in compute dtype.
  virtual Tensor forward(const FluxInputs& in) = 0;
  // The same, sequence-parallel: a collective of every rank of parallel's SP group, each passing its rows.
  // Returns this rank's image rows of the velocity, [B, image_count, out_channels].
  virtual Tensor forward(const FluxInputs& in, const FluxParallel& parallel) = 0;

 protected:
  explicit FluxTransformer(FluxConfig config) : config_(config) {}
  FluxConfig config_;
};

}  // namespace paradit
