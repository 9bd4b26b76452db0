// AutoencoderKL.tiled_decode: overlapping latent tiles decoded one by one, seams blended linearly.
#pragma once

#include <functional>

#include "paradit/backend/backend.h"
#include "paradit/models/vae.h"

namespace paradit::vae {

// diffusers' tile arithmetic, with its int() truncations.
struct TileGrid {
  int tile_latent = 0;   // tile_latent_min_size: latent edge of a tile
  int stride = 0;        // overlap_size: latent step between tile origins
  int blend_extent = 0;  // pixels blended across a seam
  int row_limit = 0;     // pixels kept of each tile (before the next tile's blend region)
};

// tile_sample_size 0 means config.sample_size. Throws kInvalidArgument for tiles too small to advance.
TileGrid tile_grid(const VaeConfig& config, int tile_sample_size);
// Whether diffusers would tile latents of h×w: either side larger than a tile.
bool needs_tiling(const TileGrid& grid, int64_t h, int64_t w);

// z: NHWC latents [B, h, w, C] on the device (contiguous). decode_tile maps an NHWC latent view to its decoded
// NHWC device tensor. Returns the blended image as a host f32 [B, H, W, C_out] tensor.
Tensor tiled_decode(Backend& backend, const Tensor& z, const TileGrid& grid,
                    const std::function<Tensor(const Tensor&)>& decode_tile);

}  // namespace paradit::vae
