// T5EncoderModel (transformers, T5 v1.1): FLUX.1's `text_encoder_2`, on any Backend.
//
// Forward as transformers computes it: shared embedding (not scaled); per block: T5LayerNorm (RMS, weight only,
// f32 statistics) → self-attention without 1/√d scaling, plus the relative position bias that block 0 computes and
// every block reuses → residual; T5LayerNorm → gelu_new(wi_0·x) ⊙ (wi_1·x) → wo → residual; final T5LayerNorm.
// The bias [H, S, S] is made on the host in f32 once per sequence length and kept on the device. Padding is not
// masked (FLUX passes no attention mask).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "paradit/backend/backend.h"

namespace paradit {

struct T5Config {
  int vocab_size = 32128;
  int d_model = 4096;
  int d_kv = 64;
  int num_heads = 64;
  int d_ff = 10240;
  int num_layers = 24;
  int relative_attention_num_buckets = 32;
  int relative_attention_max_distance = 128;
  float layer_norm_epsilon = 1e-6f;
  // feed_forward_proj: only "gated-gelu" (T5 v1.1, FLUX) is supported.

  int inner_dim() const { return num_heads * d_kv; }
  // google/t5-v1_1-xxl's encoder, as FLUX.1's text_encoder_2/config.json has it.
  static T5Config v1_1_xxl();
  // A transformers T5Config config.json (its text). Absent keys take T5Config's defaults, as transformers does
  // (note: feed_forward_proj then defaults to "relu", which is refused). Throws kCorruptData / kInvalidArgument /
  // kUnimplemented naming `source` and the key.
  static T5Config from_json(const std::string& json_text, const std::string& source);
  bool operator==(const T5Config&) const = default;
  // "24 layers, 64 heads x 64, d_model 4096, d_ff 10240, vocab 32128, 32 buckets / 128" (messages).
  std::string summary() const;
};

class T5Encoder {
 public:
  // path: a transformers folder (config.json + model.safetensors, or shards behind model.safetensors.index.json), a
  // pipeline root (its text_encoder_2/ or text_encoder_3/, whichever holds a T5), or one .safetensors file as
  // ComfyUI users have it (t5xxl_fp16.safetensors: "encoder.*" + "shared.weight", or "encoder.embed_tokens.weight"
  // instead of "shared.weight"), with or without a key prefix. A single file without config has its config inferred
  // from the shapes (relative_attention_max_distance 128, eps 1e-6); config_json (a config.json path, a folder
  // holding one, or the JSON text) overrides either. Every tensor is checked; errors name the file and the tensor.
  // Keys beside the encoder (decoder.*, lm_head) are ignored; unknown keys inside it (fp8 scales, ...) are refused.
  static std::unique_ptr<T5Encoder> load(Backend& backend, const std::string& path,
                                         const std::string& config_json = "");
  // Random weights for benchmarks (same shapes, memory and arithmetic as a loaded model of this config): every
  // tensor filled by Backend::fill_random with a seed from its name; matrices ~ 1/√fan_in, the position bias
  // table small, norm weights ≈ 1. Throws as load does for a config the model cannot run.
  static std::unique_ptr<T5Encoder> random(Backend& backend, const T5Config& config, uint64_t seed);

  virtual ~T5Encoder() = default;
  const T5Config& config() const { return config_; }
  virtual size_t weight_bytes() const = 0;  // on the device (the host copy of the bias table not counted)

  // ids: `batch` rows of S token ids each, row-major (S = ids.size() / batch ≥ 1; FLUX pads to 512), each in
  // [0, vocab_size). Returns last_hidden_state [B, S, d_model] in compute dtype on the backend's device.
  virtual Tensor forward(const std::vector<int32_t>& ids, int64_t batch) = 0;

 protected:
  explicit T5Encoder(T5Config config) : config_(config) {}
  T5Config config_;
};

}  // namespace paradit
