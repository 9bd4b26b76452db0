// Naive float64 references for every Backend op, written straight from the math in backend.h and
// models-flux-sd3.md and independently of any backend: plain loops, double accumulation everywhere.
//
// Inputs are host tensors of any dtype and strides (read through to_contiguous_f32); results are fresh
// contiguous host f32 tensors holding the double results rounded once. Slow by design: keep shapes small.
#pragma once

#include <cstdint>

#include "paradit/backend/backend.h"
#include "paradit/core/tensor.h"

namespace paradit::test::ref {

// Element i (row-major) of fill_random, with its own splitmix64 and the law computed in double.
Tensor fill_random(const Shape& shape, uint64_t seed, float stddev);

// ep(x·wᵀ + bias): x [..., K], w [N, K], bias [N] or undefined → [..., N].
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& bias, Epilogue ep);
// residual + gate ⊙ (x·wᵀ + bias): residual [B, S, N], x [B, S, K], gate [B, N].
Tensor linear_gated_residual(const Tensor& residual, const Tensor& x, const Tensor& w, const Tensor& bias,
                             const Tensor& gate);
// LN(x)·(1 + scale) + shift over the last dim, no affine: x [B, S, D], shift/scale [B, D] or undefined.
Tensor layer_norm_modulate(const Tensor& x, const Tensor& shift, const Tensor& scale, float eps);
// RMSNorm(x)·weight over d, then RoPE on interleaved pairs if cos/sin are defined: x [B, S, H, d], cos/sin [S, d].
Tensor rms_norm_rope(const Tensor& x, const Tensor& weight, const Tensor& cos, const Tensor& sin, float eps);
// softmax(scale·q·kᵀ)·v per (batch, head): q [B, Sq, H, d], k/v [B, Skv, H, d] → [B, Sq, H, d]; if lse is not
// null it receives log Σ_j exp(scale·q·k_j) as f32 [B, H, Sq].
Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, float scale, Tensor* lse = nullptr);

Tensor silu(const Tensor& x);
Tensor gelu_tanh(const Tensor& x);
Tensor add(const Tensor& a, const Tensor& b);
// x + gate ⊙ y: x, y [B, S, D], gate [B, D].
Tensor gated_add(const Tensor& x, const Tensor& y, const Tensor& gate);

}  // namespace paradit::test::ref
