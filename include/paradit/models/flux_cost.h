// Arithmetic of one FLUX transformer forward, for benchmarks and capacity planning.
#pragma once

#include <cstdint>

#include "paradit/io/flux_checkpoint.h"

namespace paradit {

struct FluxFlops {
  double matmul = 0;     // every linear layer (projections, MLPs, modulation, embedders)
  double attention = 0;  // 4·S²·D per block (Q·Kᵀ and P·V)
  double total() const { return matmul + attention; }
};

// FLOPs of one forward over `batch` sequences of text_tokens + image_tokens.
FluxFlops flux_forward_flops(const FluxConfig& config, int64_t image_tokens, int64_t text_tokens, int batch = 1);

}  // namespace paradit
