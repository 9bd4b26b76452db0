// Launcher of Ring attention's log-sum-exp merge (lse_merge.cu). Arguments are validated by the caller
// (Backend::check_lse_merge).
#pragma once

#include <cuda_runtime.h>

#include <vector>

#include "paradit/core/tensor.h"

namespace paradit::cuda {

// out bf16 or f32 [B, S, H, d]; lse f32 [B, H, S] or undefined; block_outs (1 to 16, one dtype and strides) bf16
// or f32 [B, S, H, d]; block_lses f32 [B, H, S] (one set of strides).
void launch_lse_merge(const Tensor& out, const Tensor& lse, const std::vector<Tensor>& block_outs,
                      const std::vector<Tensor>& block_lses, cudaStream_t stream);

}  // namespace paradit::cuda
