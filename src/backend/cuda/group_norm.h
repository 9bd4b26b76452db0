// Launcher of GroupNorm over NHWC images (group_norm.cu). Arguments are validated by the caller.
#pragma once

#include <cuda_runtime.h>

#include "paradit/core/allocator.h"
#include "paradit/core/tensor.h"

namespace paradit::cuda {

// y = GroupNorm(x)·weight + bias, then SiLU when `silu`. x, y bf16 [B, H, W, C] (channels contiguous, y may be
// x itself); weight, bias bf16 [C]; C divisible by groups. Scratch (per-chunk partial sums, per-channel
// coefficients) comes from `alloc`.
void launch_group_norm(const Tensor& y, const Tensor& x, const Tensor& weight, const Tensor& bias, int groups,
                       float eps, bool silu, Allocator& alloc, cudaStream_t stream);

}  // namespace paradit::cuda
