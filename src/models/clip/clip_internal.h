// Pieces of the CLIP text encoder shared by its config, weight loading and forward.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "paradit/backend/backend.h"
#include "paradit/models/clip_text.h"

namespace paradit::clip {

// Throws kInvalidArgument / kUnimplemented naming `source` when the model cannot run with this config.
void validate_config(const ClipTextConfig& c, const std::string& source);
// Whether a config.json (its text) describes a CLIP text tower (a pipeline root's subfolder is picked by it).
bool accepts_config(const std::string& json_text);

struct Linear {
  Tensor w;  // [out, in]
  Tensor b;  // [out]
};
struct Norm {
  Tensor w, b;  // [hidden]
};

struct LayerWeights {
  Norm ln1;
  Linear qkv;  // [3D, D]: rows q; k; v, fused at load so one GEMM makes all three
  Linear out;
  Norm ln2;
  Linear fc1, fc2;
};

struct ClipWeights {
  Tensor token_embedding;     // [vocab, D]
  Tensor position_embedding;  // [max_positions, D]
  std::vector<LayerWeights> layers;
  Norm final_norm;
  size_t bytes = 0;
};

struct LoadedClip {
  ClipTextConfig config;
  ClipWeights weights;
};

// Finds, checks and uploads the weights at `path` (see ClipTextModel::load).
LoadedClip load_clip(Backend& backend, const std::string& path, const std::string& config_json);
// Random weights of config `c` on the device (see ClipTextModel::random).
ClipWeights random_weights(Backend& backend, const ClipTextConfig& c, uint64_t seed);

}  // namespace paradit::clip
