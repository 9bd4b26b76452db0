// What `paradit generate` writes besides pixels: file names, the PNG "parameters" text, the --json summary.
#pragma once

#include <string>
#include <vector>

#include "paradit/pipeline/flux_pipeline.h"
#include "paradit/runtime/engine.h"

namespace paradit::cli {

// Everything about one run that the outputs describe.
struct GenerateReport {
  std::string model, variant, device, dtype;
  FluxRequest request;           // with negative_prompt set only when true CFG ran
  std::string init_latents;      // the --init-latents file, if any
  const FluxResult* result = nullptr;
  std::vector<std::string> outputs;
  double load_s = 0, write_s = 0, total_s = 0;
  std::string approximate;  // why the image is not the exact one (stale K/V), or empty
  std::vector<RankMemory> memory;  // by world rank
};

// `output` itself for one image; for several, numbered before the extension: out.png → out_1.png … out_N.png
// (zero-padded to the width of N, so that the names sort).
std::vector<std::string> numbered_outputs(const std::string& output, int count);

// AUTOMATIC1111's layout, which stable-diffusion.cpp also writes and image viewers show: the prompt, then
// "Negative prompt: …", then "Key: value, …" for image `index`.
std::string png_parameters(const GenerateReport& report, int index);

// One JSON object: settings, seeds, output paths, warnings, timings per stage and per step, device memory per
// rank (bytes; peak null where the backend cannot tell).
std::string json_summary(const GenerateReport& report);

}  // namespace paradit::cli
