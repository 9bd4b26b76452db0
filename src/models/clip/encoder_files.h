// Finding a text encoder's weights and config.json the ways users have them, and reading checked tensors.
//
// Shared by the CLIP and T5 loaders (it lives beside CLIP only because each model's folder has one owner; nothing
// in it is CLIP-specific, and it can move to a common folder as is). Accepted paths: a transformers folder (config.json + model.safetensors
// or a sharded model.safetensors.index.json), a pipeline root (the encoder's subfolder is used), a
// *.safetensors.index.json, or one .safetensors file in ComfyUI naming with or without a key prefix.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "paradit/backend/backend.h"
#include "paradit/io/safetensors.h"

namespace paradit::text_encoder {

// What to look for: `what` names the model in messages ("CLIP text encoder"); `marker` is a key every such model
// has, under the model's own naming ("embeddings.token_embedding.weight"); `subfolders` are where a pipeline
// root keeps it, tried in order; `accepts_config` says whether a subfolder's config.json describes this model.
struct EncoderKind {
  std::string what;
  std::string marker;
  std::vector<std::string> subfolders;
  bool (*accepts_config)(const std::string& json_text);
};

struct EncoderFiles {
  SafetensorsSet set;
  std::string path;  // the weights as opened (for messages)
  // "" or the whole-component prefix in front of the model's names ("text_model.", "cond_stage_model.transformer.").
  std::string prefix;
  std::optional<std::string> config_text;  // the config.json that goes with the weights, or config_json's
  std::string config_source;               // where config_text came from

  bool has(const std::string& name) const { return set.contains(prefix + name); }
  // The stored tensor `prefix + name`, a host view in its stored dtype, checked to have `shape`. Throws kNotFound
  // (missing), kUnimplemented (a dtype paradit does not read) or kCorruptData (wrong shape) naming the file and the
  // tensor; `model` (the config summary) says what the shape was expected for.
  Tensor get(const std::string& name, const Shape& shape, const std::string& model) const;
  // The stored shape of `prefix + name`; throws kNotFound naming the file and the tensor.
  Shape shape(const std::string& name) const;
  // One more than the largest index i of any key `prefix + block_prefix + i + "."`; 0 when there is none.
  int count_blocks(const std::string& block_prefix) const;
};

// Opens the weights at `path` (see the header comment). config_json, when not empty, is a path to a config.json,
// a folder holding one, or the JSON text itself, and replaces any config found beside the weights. Throws Error
// naming the path: kNotFound, kCorruptData (no such model in the file, or two of them under different prefixes).
EncoderFiles open_encoder_files(const std::string& path, const std::string& config_json, const EncoderKind& kind);

// Tensors whose names start with `prefix + ns` (the model's namespace, "text_model.") that are neither in
// `expected` nor in `ignored`: refused with kCorruptData naming the file, since an unknown key there usually means a
// variant (fp8 scale factors, a different architecture) whose math would be wrong.
void refuse_unknown(const EncoderFiles& files, const std::string& ns, const std::vector<std::string>& expected,
                    const std::vector<std::string>& ignored, const std::string& model);

// A device tensor in the backend's compute dtype stacking the given host tensors along dimension 0, in order
// ([q; k; v] weights [3D, D] or biases [3D], so that one GEMM computes the three projections).
Tensor upload_rows(Backend& backend, const std::vector<Tensor>& parts);

// One weight of a text encoder made by ::random (benchmarks): a device tensor in compute dtype filled by
// Backend::fill_random with a seed from `name`, under FluxTransformer::random's law so that activations keep their
// scale: matrices ~ 1/√(row width), 1-D "*.bias" tensors 0.01, other 1-D tensors (norm scales) 1 ± 0.02.
Tensor random_weight(Backend& backend, uint64_t seed, const std::string& name, const Shape& shape);

}  // namespace paradit::text_encoder
