// The pipeline's arithmetic after the VAE: 8-bit images.
#pragma once

#include <vector>

#include "paradit/backend/backend.h"
#include "paradit/core/tensor.h"
#include "paradit/models/vae.h"

namespace paradit::vae {

// VaeImageProcessor.postprocess + numpy_to_pil (Backend::to_rgb8) of contiguous NHWC [B, H, W, C] images y: on
// be's device when y lives there (only the bytes travel), on the host for a host tensor.
std::vector<Rgb8Image> to_rgb8(Backend& be, const Tensor& y);

}  // namespace paradit::vae
