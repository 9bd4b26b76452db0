// The decoder's building blocks on NHWC activations ([B, H, W, C], contiguous, compute dtype). Each returns a
// fresh tensor; its input may be dropped by the caller afterwards.
#pragma once

#include "models/vae/vae_weights.h"

namespace paradit::vae {

// Every GroupNorm of diffusers' Decoder (resnets, mid attention, conv_norm_out) uses eps 1e-6.
constexpr float kNormEps = 1e-6f;

// 3×3 convolution, padding 1 (every 3×3 convolution of the decoder).
Tensor conv3x3(Backend& backend, const Conv& conv, const Tensor& x);
// A 1×1 convolution as a Linear over the H·W pixels.
Tensor conv1x1(Backend& backend, const Linear& proj, const Tensor& x);
Tensor resnet_block(Backend& backend, const Resnet& r, const Tensor& x, int groups);
// x + to_out(softmax(q·kᵀ/√C)·v) with q, k, v = to_q/k/v(GroupNorm(x)): one head of width C over H·W tokens.
Tensor attention_block(Backend& backend, const Attention& a, const Tensor& x, int groups);
// Upsample2D: nearest ×2, then a 3×3 convolution.
Tensor upsample_block(Backend& backend, const Conv& conv, const Tensor& x);

}  // namespace paradit::vae
