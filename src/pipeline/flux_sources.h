// Turning FluxPipelineSources into one path per component, or one error naming every missing piece.
#pragma once

#include <string>

#include "paradit/pipeline/flux_pipeline.h"

namespace paradit::flux_pipeline {

struct ResolvedSources {
  // Weights (a file or a folder, as the component's loader takes it) and the config_json to pass it ("" = its own
  // or inferred).
  std::string transformer, transformer_config;
  std::string vae, vae_config;
  std::string clip, clip_config;
  std::string t5, t5_config;
  std::string clip_tokenizer, t5_tokenizer;
  std::string scheduler_config;  // a scheduler_config.json, or "" for the published config of the variant
  std::string model_name;        // for messages and PNG metadata
};

// Reads model_dir's model_index.json (a FluxPipeline, with every component the single files do not replace) and
// checks that every path exists. Throws kNotFound listing all missing pieces with the flag that supplies each,
// kCorruptData for a malformed model_index.json, kUnimplemented for another pipeline class.
ResolvedSources resolve_sources(const FluxPipelineSources& sources);

}  // namespace paradit::flux_pipeline
