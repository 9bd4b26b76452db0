// Latents on the host: seeded noise, FLUX's 2×2 packing, --init-latents files, and image position ids.
//
// Shapes follow FluxPipeline (vae_scale_factor 8, packing 2×2): for an H×W image, h = ⌊H/16⌋, w = ⌊W/16⌋;
// unpacked latents are [B, 16, 2h, 2w], packed ones [B, h·w, 64] with packed channel c·4 + dy·2 + dx.
// Everything here is host f32: noise is always drawn on the host (a few MB at 2048²) so that its values do not
// depend on any device's math library, device count or sharding.
#pragma once

#include <cstdint>
#include <string>

#include "paradit/core/tensor.h"

namespace paradit {

constexpr int64_t kFluxLatentChannels = 16;
constexpr int64_t kFluxVaeScale = 8;   // VAE downsampling
constexpr int64_t kFluxPatch = 2;      // packing
constexpr int64_t kFluxPixelsPerToken = kFluxVaeScale * kFluxPatch;

// [B, 16, 2h, 2w] and [B, h·w, 64] for an H×W image (floored to multiples of 16, as the pipeline does).
// Throws kInvalidArgument when H or W < 16 or batch < 1.
Shape flux_unpacked_latent_shape(int64_t batch, int64_t height, int64_t width);
Shape flux_packed_latent_shape(int64_t batch, int64_t height, int64_t width);

// One standard normal value: element i of image b for `seed`. Counter-based, so any element can be computed
// alone (a shard, a device) and gives the same value as a full draw. Box–Muller over splitmix64 streams in
// float64, rounded to f32: pair p = ⌊i/2⌋ of stream key(seed, b) gives (r·cos θ, r·sin θ) for i even / odd.
float gaussian_noise_value(uint64_t seed, uint64_t batch_index, uint64_t i);

// Noise for image `batch_index` of a batch: a contiguous host f32 tensor of `shape` (one image's shape, e.g.
// [16, 2h, 2w]) whose element i (row-major) is gaussian_noise_value(seed, batch_index, i). Image b is the same
// whatever the batch size, so a batch of 4 reproduces one image at a time and vice versa.
Tensor gaussian_noise(uint64_t seed, int64_t batch_index, const Shape& shape);

// Noise for a whole FLUX batch, packed: image b drawn in the unpacked layout [16, 2h, 2w] (so element order is
// diffusers' randn layout), then packed. Result [B, h·w, 64].
Tensor flux_initial_noise(uint64_t seed, int64_t batch, int64_t height, int64_t width);

// [B, C, 2h, 2w] → [B, h·w, 4C] (FluxPipeline._pack_latents). Host tensor of any dtype and strides; returns a
// contiguous host f32 tensor. Throws kInvalidArgument on odd spatial sizes or a device tensor.
Tensor pack_latents(const Tensor& unpacked);
// [B, h·w, 4C] → [B, C, latent_height, latent_width] with latent_height = 2h, latent_width = 2w (the exact
// inverse, FluxPipeline._unpack_latents). Throws kInvalidArgument when the sizes do not fit.
Tensor unpack_latents(const Tensor& packed, int64_t latent_height, int64_t latent_width);

// Reads `--init-latents FILE`: a safetensors file holding a tensor `latents` (F32, BF16 or F16), either
// unpacked [B, 16, 2h, 2w] (rank 4) or packed [B, h·w, 64] (rank 3), for `batch` images of height×width.
// Returns packed f32 [B, h·w, 64]. Errors name the file with the expected and actual shapes: kNotFound (no file,
// no `latents`), kInvalidArgument (shape, rank, batch or size mismatch; non-finite values), kCorruptData /
// kUnimplemented (from the reader, or an unreadable dtype such as F64).
Tensor load_init_latents(const std::string& path, int64_t batch, int64_t height, int64_t width);

// Position ids of the image tokens: [h·w, 3] f32, row r·w + c = (0, r, c) (FluxPipeline._prepare_latent_image_ids).
Tensor image_ids(int64_t h, int64_t w);

}  // namespace paradit
