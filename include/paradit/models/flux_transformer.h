// FluxTransformer2DModel (FLUX.1-dev / -schnell), written once against the Backend op set.
#pragma once

#include <memory>
#include <vector>

#include "paradit/backend/backend.h"
#include "paradit/io/flux_checkpoint.h"

namespace paradit {

// One forward's inputs. Tensors are on the backend's device in compute dtype unless stated.
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

 protected:
  explicit FluxTransformer(FluxConfig config) : config_(config) {}
  FluxConfig config_;
};

}  // namespace paradit
