// A FLUX.1 transformer checkpoint as users have it, read into one internal layout.
//
// Accepted: a diffusers transformer folder (config.json + diffusion_pytorch_model*.safetensors, sharded or
// not), a diffusers pipeline root (its transformer/ folder is used), or one .safetensors file in BFL/ComfyUI
// naming (with or without the "model.diffusion_model." prefix). The internal layout is BFL's, unprefixed,
// because its fused tensors map onto fewer, larger GEMMs: "double_blocks.{i}.img_attn.qkv.weight" [3D, D],
// "single_blocks.{i}.linear1.weight" [3D + 4D, D] (rows q; k; v; mlp), "final_layer.adaLN_modulation.1.weight"
// [2D, D] in BFL order (shift; scale). Diffusers tensors are fused on load; nothing is renamed at run time.
#pragma once

#include <array>
#include <memory>
#include <string>
#include <vector>

#include "paradit/core/tensor.h"

namespace paradit {

struct FluxConfig {
  int in_channels = 64;
  int out_channels = 64;
  int num_layers = 19;         // double-stream blocks
  int num_single_layers = 38;  // single-stream blocks
  int attention_head_dim = 128;
  int num_attention_heads = 24;
  int joint_attention_dim = 4096;  // T5 width
  int pooled_projection_dim = 768;  // CLIP pooled width
  bool guidance_embeds = true;      // dev: true, schnell: false
  std::array<int, 3> axes_dims_rope = {16, 56, 56};

  int hidden() const { return attention_head_dim * num_attention_heads; }
  static FluxConfig dev();      // FLUX.1-dev
  static FluxConfig schnell();  // FLUX.1-schnell
  // A diffusers FluxTransformer2DModel config.json (its text); absent keys take diffusers' defaults (note:
  // guidance_embeds defaults to false there). Throws kCorruptData / kInvalidArgument / kUnimplemented naming
  // `source` and the key.
  static FluxConfig from_diffusers_json(const std::string& json_text, const std::string& source);
  bool operator==(const FluxConfig&) const = default;
  // "19 double + 38 single blocks, 24 heads x 128, joint 4096, pooled 768, in 64, out 64, guidance" (messages).
  std::string summary() const;
  // Every internal tensor name this config needs, with its shape.
  std::vector<std::pair<std::string, Shape>> tensor_shapes() const;
};

class FluxCheckpoint {
 public:
  // Throws Error naming the path (kNotFound, kCorruptData, kInvalidArgument) when it cannot be used.
  // A single file carries no config: it is inferred from the tensor shapes (layer counts, widths, guidance
  // embedding ⇒ dev), with axes_dims_rope [16, 56, 56] when the head dim is 128 (every published FLUX.1).
  // config_json, a diffusers config.json, overrides that inference (needed for other head dims).
  // config_json may be a path to a config.json, a folder holding one, or the JSON text itself. Whatever config
  // is used (config_json, or a diffusers folder's own config.json) is checked field by field against the
  // shapes. Fill/Depth checkpoints and tensors in dtypes paradit does not read give kUnimplemented.
  static FluxCheckpoint open(const std::string& path, const std::string& config_json = "");

  const FluxConfig& config() const;
  // "diffusers" or "bfl".
  const std::string& layout() const;
  // Where the weights were read from (for messages).
  const std::string& source() const;

  // The tensor under its internal name, on the host, in the stored dtype where it maps to one stored tensor
  // (a view of the memory-mapped file) and in f32 where it is fused from several. Shape checked against
  // config().tensor_shapes(); a missing or misshapen tensor throws Error naming the file and the tensor.
  Tensor get(const std::string& internal_name) const;

 private:
  struct Impl;
  std::shared_ptr<const Impl> impl_;
};

}  // namespace paradit
