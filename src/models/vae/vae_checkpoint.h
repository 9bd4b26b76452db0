// Where a VAE decoder's weights come from: the file(s), their naming, the config, and each tensor read into
// the internal layout on the host.
#pragma once

#include <string>

#include "models/vae/vae_internal.h"
#include "models/vae/vae_tensors.h"
#include "paradit/io/safetensors.h"
#include "paradit/models/vae.h"

namespace paradit::vae {

struct VaeSource {
  SafetensorsSet set;
  std::string layout;  // "diffusers" or "ldm"
  std::string prefix;  // before every stored name: "", "first_stage_model.", "vae."
  VaeConfig config;
  std::string config_source;  // a config.json path, "the given config JSON", or "inferred from <file>"
};

// See VaeDecoder::load for what `path` and `config_json` may be. Checks the config and refuses stored decoder
// tensors that the config does not use (they mean a config that does not describe the file).
VaeSource open_source(const std::string& path, const std::string& config_json);

// The stored tensor for `spec`, checked and converted on the host to contiguous f32 in the internal layout:
// 3×3 convolutions [Cout, 3, 3, Cin], 1×1 convolutions and attention projections [Cout, Cin], vectors as is.
// Throws kNotFound (missing) / kCorruptData (shape) / kUnimplemented (dtype) naming the file and the tensor.
Tensor read_tensor(const VaeSource& source, const TensorSpec& spec);

}  // namespace paradit::vae
