// Latent unscaling and 8-bit conversion, with torch's and numpy's f32 arithmetic.
#include "models/vae/vae_postprocess.h"

#include <cstdint>

#include "paradit/core/status.h"

namespace paradit::vae {

Tensor unscale_latents(const Tensor& latents, LatentLayout layout, const VaeConfig& config) {
  PD_CHECK(latents.dim() == 4 && latents.dtype() == DType::kF32 && latents.is_contiguous());
  const bool nchw = layout == LatentLayout::kNCHW;
  const int64_t B = latents.size(0), C = latents.size(nchw ? 1 : 3), h = latents.size(nchw ? 2 : 1),
                w = latents.size(nchw ? 3 : 2);
  // torch rounds the Python scalars to the tensor's f32 before the division and the addition.
  const float scaling = float(config.scaling_factor), shift = float(config.shift_factor);
  Tensor out = Tensor::empty({B, h, w, C}, DType::kF32, cpu_allocator());
  const float* src = latents.data_as<float>();
  float* dst = out.data_as<float>();
  for (int64_t n = 0; n < B; ++n)
    for (int64_t y = 0; y < h; ++y)
      for (int64_t x = 0; x < w; ++x)
        for (int64_t c = 0; c < C; ++c) {
          const float v = nchw ? src[((n * C + c) * h + y) * w + x] : src[((n * h + y) * w + x) * C + c];
          dst[((n * h + y) * w + x) * C + c] = v / scaling + shift;
        }
  return out;
}

std::vector<Rgb8Image> to_rgb8(const Tensor& y) {
  PD_CHECK(y.dim() == 4 && y.dtype() == DType::kF32 && y.is_contiguous());
  std::vector<Rgb8Image> images;
  const int64_t per_image = y.size(1) * y.size(2) * y.size(3);
  for (int64_t n = 0; n < y.size(0); ++n) {
    Rgb8Image img;
    img.height = y.size(1);
    img.width = y.size(2);
    img.channels = y.size(3);
    img.pixels.resize(size_t(per_image));
    const float* src = y.data_as<float>() + n * per_image;
    uint8_t* dst = img.pixels.data();
    // (y·0.5 + 0.5).clamp(0, 1)·255 rounded half to even, NaN → 0 (numpy's cast of NaN to uint8 is undefined; 0 is
    // what it gives on x86). Written to vectorise (with -fno-trapping-math, CMakeLists.txt) and threaded for large
    // images (2048² is 12.6 M values): `v > 0 ? v : 0` is false for NaN, and adding and taking away 1.5·2²³
    // rounds a value in [0, 255] to the nearest integer, ties to even, in the default rounding mode — what
    // std::nearbyint does, at a fraction of the cost.
    constexpr float kRound = 12582912.0f;
#pragma omp parallel for simd if (per_image >= (int64_t(1) << 20))
    for (int64_t i = 0; i < per_image; ++i) {
      float v = src[i] * 0.5f + 0.5f;
      v = v > 0.0f ? v : 0.0f;
      v = v < 1.0f ? v : 1.0f;
      dst[i] = uint8_t(int((v * 255.0f + kRound) - kRound));
    }
    images.push_back(std::move(img));
  }
  return images;
}

}  // namespace paradit::vae
