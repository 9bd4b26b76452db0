// Assembling one FluxResult from the shares of a parallel generate's ranks.
#pragma once

#include <vector>

#include "paradit/pipeline/flux_pipeline.h"

namespace paradit::runtime {

// parts by world rank. Every image of the request lands at its batch index, with its seed, latents and step
// times, from the rank that decoded it. Steps, sequence length, warnings and the encode time are those of the
// rank that encoded the prompts (parts[encoder], flux_prompt_encoder_rank); the denoise and decode times are
// the slowest rank's (the ranks run side by side).
FluxResult merge_rank_results(const FluxRequest& request, std::vector<FluxRankResult>& parts, int encoder);

}  // namespace paradit::runtime
