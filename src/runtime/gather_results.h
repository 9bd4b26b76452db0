// Under an MPI launch: every process's share of a request brought to world rank 0, which merges and reports them.
#pragma once

#include <vector>

#include "paradit/comm/communicator.h"
#include "paradit/pipeline/flux_pipeline.h"

namespace paradit::runtime {

// Collective over `host` (a world of host tensors, rank = world rank): rank 0 returns every rank's share by
// world rank (its own first), the others an empty list. A share carries what merge_rank_results takes from a
// rank that is not rank 0: its images with their batch indices, seeds, latents and step times, its encode,
// denoise and decode times, and (read from the rank that encoded the prompts) its sequence length and warnings.
std::vector<FluxRankResult> gather_rank_results(Communicator& host, const FluxRequest& request, FluxRankResult mine);

}  // namespace paradit::runtime
