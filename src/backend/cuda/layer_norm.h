// Launcher of the fused LayerNorm + adaLN modulation (layer_norm.cu). Arguments are validated by the caller.
#pragma once

#include <cuda_runtime.h>

#include "paradit/core/tensor.h"

namespace paradit::cuda {

// y = LN(x)·(1 + scale) + shift over the last dim, no affine. x, y bf16 [B, S, D] (last dim contiguous);
// shift, scale bf16 [B, D] (last dim contiguous) or both undefined.
void launch_layer_norm_modulate(const Tensor& y, const Tensor& x, const Tensor& shift, const Tensor& scale,
                                float eps, cudaStream_t stream);

}  // namespace paradit::cuda
