// Naive float64 references for every Backend op, written straight from the math in backend.h and
// models-flux-sd3.md and independently of any backend: plain loops, double accumulation everywhere.
//
// Inputs are host tensors of any dtype and strides (read through to_contiguous_f32); results are fresh
// contiguous host f32 tensors holding the double results rounded once. Slow by design: keep shapes small.
#pragma once

#include <cstdint>
#include <vector>

#include "paradit/backend/backend.h"
#include "paradit/core/tensor.h"

namespace paradit::test::ref {

// Element i (row-major) of fill_random, with its own splitmix64 and the law computed in double.
Tensor fill_random(const Shape& shape, uint64_t seed, float stddev);

// ep(x·wᵀ + bias): x [..., K], w [N, K], bias [N] or undefined → [..., N].
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& bias, Epilogue ep);
// residual + gate ⊙ (x·wᵀ + bias): residual [B, S, N], x [B, S, K], gate [B, N].
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
// alpha·a + beta·b; a and b of any dtypes, read as their f32 values.
Tensor axpby(const Tensor& a, float alpha, const Tensor& b, float beta);
Tensor mul(const Tensor& a, const Tensor& b);
// x·σ(1.702·x).
Tensor quick_gelu(const Tensor& x);

// Text encoders.
// out[b, s] = table[ids[b·S + s]]: table [V, D] → [B, S, D], ids.size() = B·S.
Tensor embedding(const Tensor& table, const std::vector<int32_t>& ids, int64_t B, int64_t S);
// LN(x)·weight + bias over the last dim (biased variance); bias may be undefined.
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps);
// softmax(scale·q·kᵀ + bias[h])·v over the keys j ≤ i when causal, every key otherwise: q [B, Sq, H, d],
// k/v [B, Skv, H, d], bias [H, Sq, Skv] or undefined. A query whose every key is hidden (−inf bias) gets 0.
Tensor attention_biased(const Tensor& q, const Tensor& k, const Tensor& v, float scale, const Tensor& bias,
                        bool causal);

// VAE (NHWC).
// Stride-1 convolution with `pad` zeros on every side: x [B, H, W, Cin], w [Cout, kh, kw, Cin], bias [Cout] or
// undefined → [B, H + 2·pad − kh + 1, W + 2·pad − kw + 1, Cout].
Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& bias, int pad);
// GroupNorm (contiguous channel groups, statistics over H, W and the group's channels per batch entry, biased
// variance), affine, then SiLU when silu: x [B, H, W, C], weight/bias [C].
Tensor group_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, int groups, float eps, bool silu);
// [B, H, W, C] → [B, 2H, 2W, C], y[b, i, j] = x[b, i/2, j/2].
Tensor upsample_nearest2x(const Tensor& x);

}  // namespace paradit::test::ref
