// Tiled decoding, step for step as AutoencoderKL.tiled_decode: tiles of tile_latent latents start every `stride`
// latents; each decoded tile is blended in place with the (already blended) tile above it, then with the one to
// its left, and its first row_limit pixels each way are kept. Only the previous row of tiles is held. The
// decoded tiles have out_channels (3) channels, so the blend runs on the host in f32 at no real cost, with
// torch's arithmetic: a·f32(1 − y/e) + b·f32(y/e).
#include "models/vae/vae_tiling.h"

#include <algorithm>
#include <vector>

#include "paradit/core/status.h"

namespace paradit::vae {

namespace {

constexpr double kOverlap = 0.25;  // AutoencoderKL.tile_overlap_factor

// Host f32 NHWC tile; element (n, y, x, c).
struct Tile {
  Tensor t;
  int64_t B() const { return t.size(0); }
  int64_t H() const { return t.size(1); }
  int64_t W() const { return t.size(2); }
  int64_t C() const { return t.size(3); }
  float* at(int64_t n, int64_t y, int64_t x) const { return t.data_as<float>() + ((n * H() + y) * W() + x) * C(); }
};

// b[:, y] = a[:, a.H − e + y]·(1 − y/e) + b[:, y]·(y/e) for y < e = min(a.H, b.H, extent).
void blend_v(const Tile& a, const Tile& b, int extent) {
  const int64_t e = std::min<int64_t>({a.H(), b.H(), extent});
  PD_CHECK(a.W() == b.W() && a.C() == b.C(), "vertically adjacent tiles differ in width");
  for (int64_t y = 0; y < e; ++y) {
    const float wa = float(1.0 - double(y) / double(e)), wb = float(double(y) / double(e));
    for (int64_t n = 0; n < b.B(); ++n) {
      const float* pa = a.at(n, a.H() - e + y, 0);
      float* pb = b.at(n, y, 0);
      for (int64_t i = 0; i < b.W() * b.C(); ++i) pb[i] = pa[i] * wa + pb[i] * wb;
    }
  }
}

// b[:, :, x] = a[:, :, a.W − e + x]·(1 − x/e) + b[:, :, x]·(x/e) for x < e = min(a.W, b.W, extent).
void blend_h(const Tile& a, const Tile& b, int extent) {
  const int64_t e = std::min<int64_t>({a.W(), b.W(), extent});
  PD_CHECK(a.H() == b.H() && a.C() == b.C(), "horizontally adjacent tiles differ in height");
  for (int64_t x = 0; x < e; ++x) {
    const float wa = float(1.0 - double(x) / double(e)), wb = float(double(x) / double(e));
    for (int64_t n = 0; n < b.B(); ++n) {
      for (int64_t y = 0; y < b.H(); ++y) {
        const float* pa = a.at(n, y, a.W() - e + x);
        float* pb = b.at(n, y, x);
        for (int64_t c = 0; c < b.C(); ++c) pb[c] = pa[c] * wa + pb[c] * wb;
      }
    }
  }
}

std::vector<int64_t> origins(int64_t size, int stride) {
  std::vector<int64_t> o;
  for (int64_t i = 0; i < size; i += stride) o.push_back(i);
  return o;
}

}  // namespace

TileGrid tile_grid(const VaeConfig& config, int tile_sample_size) {
  const int sample = tile_sample_size > 0 ? tile_sample_size : config.sample_size;
  TileGrid g;
  g.tile_latent = int(double(sample) / double(config.scale_factor()));
  g.stride = int(double(g.tile_latent) * (1.0 - kOverlap));
  g.blend_extent = int(double(sample) * kOverlap);
  g.row_limit = sample - g.blend_extent;
  PD_REQUIRE(g.stride >= 1, "VAE tiled decode: a tile of ", sample, " pixels is ", g.tile_latent,
             " latents, too small to step by (need at least ", 2 * config.scale_factor(), " pixels)");
  return g;
}

bool needs_tiling(const TileGrid& grid, int64_t h, int64_t w) { return h > grid.tile_latent || w > grid.tile_latent; }

Tensor tiled_decode(Backend& backend, const Tensor& z, const TileGrid& grid,
                    const std::function<Tensor(const Tensor&)>& decode_tile) {
  const std::vector<int64_t> ys = origins(z.size(1), grid.stride), xs = origins(z.size(2), grid.stride);
  std::vector<Tile> above, row;
  std::vector<Tensor> kept_rows;  // host f32 [B, ≤row_limit, W, C] per row of tiles
  int64_t out_h = 0;
  for (size_t i = 0; i < ys.size(); ++i) {
    row.clear();
    for (size_t j = 0; j < xs.size(); ++j) {
      const int64_t th = std::min<int64_t>(grid.tile_latent, z.size(1) - ys[i]);
      const int64_t tw = std::min<int64_t>(grid.tile_latent, z.size(2) - xs[j]);
      const Tensor latent_tile = z.slice(1, ys[i], th).slice(2, xs[j], tw);
      Tile tile{backend.download_f32(decode_tile(latent_tile))};
      if (i > 0) blend_v(above[j], tile, grid.blend_extent);
      if (j > 0) blend_h(row[j - 1], tile, grid.blend_extent);
      row.push_back(tile);
    }
    // Concatenate the cropped tiles of this row.
    const int64_t B = row[0].B(), C = row[0].C(), h = std::min<int64_t>(row[0].H(), grid.row_limit);
    int64_t w = 0;
    for (const Tile& t : row) w += std::min<int64_t>(t.W(), grid.row_limit);
    Tensor kept = Tensor::empty({B, h, w, C}, DType::kF32, cpu_allocator());
    int64_t x0 = 0;
    for (const Tile& t : row) {
      const int64_t tw = std::min<int64_t>(t.W(), grid.row_limit);
      for (int64_t n = 0; n < B; ++n)
        for (int64_t y = 0; y < h; ++y)
          std::copy_n(t.at(n, y, 0), tw * C, kept.data_as<float>() + ((n * h + y) * w + x0) * C);
      x0 += tw;
    }
    out_h += h;
    kept_rows.push_back(std::move(kept));
    above = row;
  }
  // Concatenate the rows.
  const int64_t B = kept_rows[0].size(0), W = kept_rows[0].size(2), C = kept_rows[0].size(3);
  Tensor out = Tensor::empty({B, out_h, W, C}, DType::kF32, cpu_allocator());
  int64_t y0 = 0;
  for (const Tensor& r : kept_rows) {
    const int64_t h = r.size(1);
    for (int64_t n = 0; n < B; ++n)
      std::copy_n(r.data_as<float>() + n * h * W * C, h * W * C, out.data_as<float>() + (n * out_h + y0) * W * C);
    y0 += h;
  }
  return out;
}

}  // namespace paradit::vae
