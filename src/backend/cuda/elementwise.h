// Launchers of the elementwise family (elementwise.cu). Arguments are validated by the caller.
#pragma once

#include <cuda_runtime.h>

#include "paradit/core/tensor.h"

namespace paradit::cuda {

enum class Unary { kSilu, kGeluTanh, kQuickGelu };

// y = f(x); same shape, any strides, bf16 or f32 (both the same dtype). y may alias x.
void launch_unary(Unary f, const Tensor& y, const Tensor& x, cudaStream_t stream);
// y = a + b; same shape and dtype (bf16 or f32).
void launch_add(const Tensor& y, const Tensor& a, const Tensor& b, cudaStream_t stream);
// x += gate ⊙ y with x, y [B, S, D] and gate [B, D] broadcast over S (all the same dtype).
void launch_gated_add(const Tensor& x, const Tensor& y, const Tensor& gate, cudaStream_t stream);
// y = a ⊙ b; same shape and dtype (bf16 or f32).
void launch_mul(const Tensor& y, const Tensor& a, const Tensor& b, cudaStream_t stream);
// y = alpha·a + beta·b in f32; same shape, any strides, each of f32/bf16/f16 independently. y may alias an input
// of its own dtype.
void launch_axpby(const Tensor& y, const Tensor& a, float alpha, const Tensor& b, float beta, cudaStream_t stream);

}  // namespace paradit::cuda
