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

// Backend::group_norm_sums: sums f32 [2, B, groups] (any strides) of x bf16 [B, H, W, C] about shift (f32 [B,
// groups] or undefined); an empty x gives zeros.
void launch_group_norm_sums(const Tensor& sums, const Tensor& x, int groups, const Tensor& shift, Allocator& alloc,
                            cudaStream_t stream);
// Backend::group_norm_apply: y = GroupNorm(x) with the statistics of given sums about shift over `count` elements
// per group, then the affine and SiLU. Shapes and dtypes as launch_group_norm's, plus sums and shift as above.
void launch_group_norm_apply(const Tensor& y, const Tensor& x, const Tensor& sums, const Tensor& shift, double count,
                             const Tensor& weight, const Tensor& bias, int groups, float eps, bool silu,
                             Allocator& alloc, cudaStream_t stream);

}  // namespace paradit::cuda
