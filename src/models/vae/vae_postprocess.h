// The pipeline's arithmetic around the VAE, on the host: latent unscaling before, 8-bit conversion after.
#pragma once

#include <vector>

#include "paradit/core/tensor.h"
#include "paradit/models/vae.h"

namespace paradit::vae {

// z/scaling + shift (in f32, as torch computes `latents / scaling_factor + shift_factor` on f32 latents),
// from host f32 latents [B, C, h, w] or [B, h, w, C] to a host f32 NHWC [B, h, w, C] tensor.
Tensor unscale_latents(const Tensor& latents, LatentLayout layout, const VaeConfig& config);

// VaeImageProcessor.postprocess + numpy_to_pil: (y·0.5 + 0.5).clamp(0, 1), then (·255).round() (half to even,
// numpy's rounding) as uint8. y: host f32 NHWC [B, H, W, C].
std::vector<Rgb8Image> to_rgb8(const Tensor& y);

}  // namespace paradit::vae
