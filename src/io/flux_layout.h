// How a FLUX transformer is stored in a set of safetensors files: naming, key prefix, and the configuration
// its tensor shapes imply.
#pragma once

#include <optional>
#include <string>

#include "paradit/io/flux_checkpoint.h"
#include "paradit/io/safetensors.h"

namespace paradit::io {

struct FluxStorage {
  SafetensorsSet set;
  std::string path;  // what was opened, for messages
  bool diffusers = false;
  std::string prefix;  // "" or e.g. "model.diffusion_model." (ComfyUI/BFL files)

  const char* layout() const { return diffusers ? "diffusers" : "bfl"; }
  // The stored key holding an internal tensor that maps to exactly one stored tensor (not the fused ones).
  std::string stored_key(const std::string& internal_name) const;
  // The shape of that stored tensor; throws kNotFound naming the file and the stored key when absent.
  Shape stored_shape(const std::string& internal_name) const;
};

// Finds the naming and prefix from the marker keys; throws kCorruptData ("not a FLUX transformer") when
// neither naming's marker is present, or when markers disagree.
FluxStorage detect_flux_storage(SafetensorsSet set, const std::string& path);

// Refuses FLUX.1 Fill / Depth checkpoints (wider image input) with kUnimplemented.
void refuse_unsupported_variants(const FluxStorage& s);

// The configuration the shapes imply. axes_dims_rope cannot be read from shapes; it is [16, 56, 56] when the
// head dim is 128 and nullopt otherwise (the caller then needs a config.json).
struct InferredFluxConfig {
  FluxConfig config;
  bool axes_known = false;
};
InferredFluxConfig infer_flux_config(const FluxStorage& s);

// Throws kInvalidArgument naming both sources and the first field where a given config.json disagrees with
// what the tensors hold.
void check_config_matches(const FluxConfig& given, const std::string& given_source, const FluxConfig& inferred,
                          const std::string& path);

}  // namespace paradit::io
