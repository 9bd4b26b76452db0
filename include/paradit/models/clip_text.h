// CLIPTextModel (transformers): FLUX.1's `text_encoder`, CLIP ViT-L/14's text tower, on any Backend.
//
// Forward as transformers computes it: token + position embeddings; pre-LN encoder layers (LayerNorm → causal
// self-attention, q/k/v/out projections with bias, scale head_dim^-0.5 → residual; LayerNorm → fc1 → activation →
// fc2 → residual); final LayerNorm. pooler_output is the final hidden state at one position per row, chosen by
// transformers' rule for the config's eos_token_id (see clip_pool_positions). No padding mask: FLUX passes none.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "paradit/backend/backend.h"

namespace paradit {

struct ClipTextConfig {
  int vocab_size = 49408;
  int hidden_size = 768;
  int intermediate_size = 3072;
  int num_hidden_layers = 12;
  int num_attention_heads = 12;
  int max_position_embeddings = 77;
  std::string hidden_act = "quick_gelu";  // also gelu_new / gelu_pytorch_tanh; exact "gelu" is refused
  float layer_norm_eps = 1e-5f;
  int eos_token_id = 2;  // 2: the legacy argmax pooling (openai/clip-vit-large-patch14, FLUX.1)

  int head_dim() const { return hidden_size / num_attention_heads; }
  // FLUX.1's text_encoder/config.json (openai/clip-vit-large-patch14's text tower).
  static ClipTextConfig clip_l();
  // A transformers CLIPTextConfig config.json (its text), or a CLIPConfig one (its "text_config" is used). Absent
  // keys take CLIPTextConfig's defaults, as transformers does (note: eos_token_id then defaults to 49407). Throws
  // kCorruptData / kInvalidArgument / kUnimplemented naming `source` and the key.
  static ClipTextConfig from_json(const std::string& json_text, const std::string& source);
  bool operator==(const ClipTextConfig&) const = default;
  // "12 layers, 12 heads x 64, hidden 768, ffn 3072, vocab 49408, 77 positions, quick_gelu, eos 2" (messages).
  std::string summary() const;
};

struct ClipTextOutput {
  Tensor last_hidden_state;  // [B, S, hidden] in compute dtype, on the backend's device
  Tensor pooler_output;      // [B, hidden]
};

class ClipTextModel {
 public:
  // path: a transformers folder (config.json + model.safetensors; keys "text_model.*" as every real file has them,
  // or without that level as transformers 5 saves them), a pipeline root (its text_encoder/), or one .safetensors
  // file as ComfyUI users have it (clip_l.safetensors), with or without a key prefix ("transformer.",
  // "cond_stage_model.transformer.", "text_encoders.clip_l.transformer.", ...). Keys beside the text tower
  // (text_projection, logit_scale, a vision tower) are ignored; unknown keys inside it are refused.
  // config_json (a config.json path, a folder holding one, or the JSON text) overrides the folder's config; a single
  // file without one must be CLIP-L (hidden 768), whose published config is then used. Every tensor is checked
  // against the config; errors name the file and the tensor. Weights are uploaded once in compute dtype.
  static std::unique_ptr<ClipTextModel> load(Backend& backend, const std::string& path,
                                             const std::string& config_json = "");
  // Random weights for benchmarks (same shapes, memory and arithmetic as a loaded model of this config): every
  // tensor filled by Backend::fill_random with a seed from its name; matrices ~ 1/√fan_in, biases small, LayerNorm
  // scales ≈ 1. Throws as load does for a config the model cannot run.
  static std::unique_ptr<ClipTextModel> random(Backend& backend, const ClipTextConfig& config, uint64_t seed);

  virtual ~ClipTextModel() = default;
  const ClipTextConfig& config() const { return config_; }
  virtual size_t weight_bytes() const = 0;  // on the device

  // ids: `batch` rows of S token ids each, row-major (S = ids.size() / batch, 1 ≤ S ≤ max_position_embeddings;
  // FLUX pads to 77), each in [0, vocab_size).
  virtual ClipTextOutput forward(const std::vector<int32_t>& ids, int64_t batch) = 0;

 protected:
  explicit ClipTextModel(ClipTextConfig config) : config_(std::move(config)) {}
  ClipTextConfig config_;
};

// The position pooled in each row, as transformers picks it: with eos_token_id == 2 (legacy configs, FLUX.1's) the
// first position of the row's largest id (torch argmax; the real EOS 49407 is the largest id); otherwise the first
// position holding eos_token_id, or 0 when the row has none.
std::vector<int64_t> clip_pool_positions(const std::vector<int32_t>& ids, int64_t batch, int eos_token_id);

}  // namespace paradit
