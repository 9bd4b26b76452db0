// Launcher of Ring attention's log-sum-exp merge (lse_merge.cu). Arguments are validated by the caller
// (Backend::check_lse_merge).
#pragma once

#include <cuda_runtime.h>

#include "paradit/core/tensor.h"

namespace paradit::cuda {

// out f32 [B, S, H, d] and lse f32 [B, H, S] in place; block_out bf16 or f32 [B, S, H, d]; block_lse f32 [B, H, S].
void launch_lse_merge(const Tensor& out, const Tensor& lse, const Tensor& block_out, const Tensor& block_lse,
                      cudaStream_t stream);

}  // namespace paradit::cuda
