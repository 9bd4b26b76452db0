// Launcher of the fused per-head RMSNorm + RoPE (rms_norm_rope.cu). Arguments are validated by the caller.
#pragma once

#include <cuda_runtime.h>

#include "paradit/core/tensor.h"

namespace paradit::cuda {

// y = RMSNorm(x)·weight over the last dim, then RoPE on interleaved pairs when cos/sin are defined.
// x, y bf16 [B, S, H, d] (last dim contiguous, y may alias x); weight bf16 [d]; cos, sin f32 [S, d] (last dim
// contiguous). Any head dim: rows too wide for a warp go through a block-per-row kernel.
void launch_rms_norm_rope(const Tensor& y, const Tensor& x, const Tensor& weight, const Tensor& cos,
                          const Tensor& sin, float eps, cudaStream_t stream);

// In place, q = RoPE(RMSNorm(q)·q_weight) and k likewise, in one launch. q, k bf16 [B, S, H, d]
// with the same strides; cos, sin f32 [S, d]. Returns false, having done nothing, for a layout the fused kernel
// does not take (no RoPE, d other than 64/128/256, unaligned rows, different strides): the caller then makes two
// launch_rms_norm_rope calls.
bool launch_qk_norm_rope(const Tensor& q, const Tensor& k, const Tensor& q_weight, const Tensor& k_weight,
                         const Tensor& cos, const Tensor& sin, float eps, cudaStream_t stream);

}  // namespace paradit::cuda
