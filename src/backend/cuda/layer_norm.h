// Launchers of the fused LayerNorm + adaLN modulation and of the affine LayerNorm (layer_norm.cu). Arguments are
// validated by the caller.
#pragma once

#include <cuda_runtime.h>

#include "paradit/core/tensor.h"

namespace paradit::cuda {

// y = LN(x)·(1 + scale) + shift over the last dim, no affine. x, y bf16 [B, S, D] (last dim contiguous);
// shift, scale bf16 [B, D] (last dim contiguous) or both undefined. With delta (bf16 [B, S, D]) and gate (bf16
// [B, D]) defined — and shift and scale then too — x += gate ⊙ delta first, in place.
void launch_layer_norm_modulate(const Tensor& y, const Tensor& x, const Tensor& shift, const Tensor& scale,
                                float eps, cudaStream_t stream, const Tensor& delta = Tensor(),
                                const Tensor& gate = Tensor());
// y = LN(x)·weight + bias over the last dim. x, y bf16 of the same shape (last dim contiguous; the leading
// dimensions must merge into at most two); weight, bias bf16 [D] contiguous, bias possibly undefined.
void launch_layer_norm(const Tensor& y, const Tensor& x, const Tensor& weight, const Tensor& bias, float eps,
                       cudaStream_t stream);

}  // namespace paradit::cuda
