// Arithmetic of one FLUX transformer forward, for benchmarks and capacity planning.
#pragma once

#include <cstdint>
#include <vector>

#include "paradit/io/flux_checkpoint.h"

namespace paradit {

struct FluxFlops {
  double matmul = 0;     // every linear layer (projections, MLPs, modulation, embedders)
  double attention = 0;  // 4·S²·D per block (Q·Kᵀ and P·V)
  double total() const { return matmul + attention; }
};

// FLOPs of one forward over `batch` sequences of text_tokens + image_tokens.
FluxFlops flux_forward_flops(const FluxConfig& config, int64_t image_tokens, int64_t text_tokens, int batch = 1);

// FLOPs of each transformer block (FluxBlockRange numbering: double blocks, then single) of one forward — what
// PipeFusion balances its stages by. Per token both kinds do 12·D² multiply-adds of GEMM and the same attention;
// a double block adds 6·D² more of modulation per stream (its weights are 2.4× a single block's).
std::vector<double> flux_block_flops(const FluxConfig& config, int64_t image_tokens, int64_t text_tokens);

}  // namespace paradit
