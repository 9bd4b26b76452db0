// AutoencoderKL.decode as diffusers computes it (post_quant_conv, then Decoder.forward), on any Backend, plus
// the pipeline's unscaling and 8-bit postprocessing around it.
#include <utility>

#include "models/vae/vae_blocks.h"
#include "models/vae/vae_checkpoint.h"
#include "models/vae/vae_internal.h"
#include "models/vae/vae_parallel.h"
#include "models/vae/vae_postprocess.h"
#include "models/vae/vae_tiling.h"
#include "models/vae/vae_weights.h"
#include "paradit/core/status.h"

namespace paradit {
namespace vae {
namespace {

class VaeModel final : public VaeDecoder {
 public:
  VaeModel(Backend& backend, VaeConfig config, std::string layout, VaeWeights weights)
      : VaeDecoder(std::move(config)), backend_(backend), layout_(std::move(layout)), w_(std::move(weights)) {}

  const std::string& layout() const override { return layout_; }
  size_t weight_bytes() const override { return w_.bytes; }

  Tensor decode(const Tensor& latents, const VaeDecodeOptions& options) override {
    const Tensor z = to_nhwc(latents, options.layout);
    if (options.tiled) {
      const TileGrid grid = tile_grid(config_, options.tile_sample_size);
      if (needs_tiling(grid, z.size(1), z.size(2)))
        return backend_.upload(decode_tiles(z, grid), backend_.compute_dtype());
    }
    return run(z, nullptr);
  }

  std::vector<Rgb8Image> decode_to_rgb8(const Tensor& latents, const VaeDecodeOptions& options) override {
    const Tensor z = unscaled(latents, options.layout);
    backend_.mark_region("decode: VAE");
    if (options.tiled) {
      const TileGrid grid = tile_grid(config_, options.tile_sample_size);
      if (needs_tiling(grid, z.size(1), z.size(2))) return to_rgb8(backend_, decode_tiles(z, grid));
    }
    const Tensor y = run(z, nullptr);
    backend_.mark_region("decode: image download, 8-bit");
    return to_rgb8(backend_, y);
  }

  Tensor decode_parallel(const Tensor& latents, Communicator& group, const VaeParallelOptions& options) override {
    validate(latents, options.layout);
    return run_parallel(latents, options.layout, group, options.root);
  }

  std::vector<Rgb8Image> decode_to_rgb8_parallel(const Tensor& latents, Communicator& group,
                                                 const VaeParallelOptions& options) override {
    const Tensor z = unscaled(latents, options.layout);
    backend_.mark_region("decode: VAE bands");
    const Tensor y = run_parallel(z, LatentLayout::kNHWC, group, options.root);
    if (!y.defined()) return {};
    backend_.mark_region("decode: image download, 8-bit");
    return to_rgb8(backend_, y);
  }

  Tensor decode_tapped(const Tensor& latents, LatentLayout layout, const VaeTap& tap) {
    return run(to_nhwc(latents, layout), tap);
  }

 private:
  void validate(const Tensor& latents, LatentLayout layout) const {
    PD_REQUIRE(latents.defined(), "VAE decode: latents are undefined");
    PD_REQUIRE(latents.device() == backend_.device(), "VAE decode: latents ", latents.desc(), " are not on ",
               backend_.device().str());
    const int channel_dim = layout == LatentLayout::kNCHW ? 1 : 3;
    PD_REQUIRE(latents.dim() == 4 && latents.size(channel_dim) == config_.latent_channels && latents.size(0) > 0 &&
                   latents.size(1) > 0 && latents.size(2) > 0 && latents.size(3) > 0,
               "VAE decode: latents ", latents.desc(), " are not ",
               layout == LatentLayout::kNCHW ? "[B, " : "[B, h, w, ", config_.latent_channels,
               layout == LatentLayout::kNCHW ? ", h, w]" : "]", " (", config_.summary(), ")");
  }

  // z/scaling + shift as contiguous NHWC latents in compute dtype, computed on the device in f32 (torch's
  // `latents / scaling_factor + shift_factor` on f32 latents, the division as a multiplication by the f32
  // reciprocal: within an ulp of it) and rounded once. The strided copy does the NCHW → NHWC transpose.
  Tensor unscaled(const Tensor& latents, LatentLayout layout) {
    validate(latents, layout);
    const Tensor src = nhwc_view(latents, layout);
    Tensor f32 = backend_.empty(src.shape(), DType::kF32), shift = backend_.empty(src.shape(), DType::kF32);
    backend_.copy(f32, src);
    backend_.fill(shift, float(config_.shift_factor));
    Tensor z = backend_.empty(src.shape());
    backend_.axpby(z, f32, 1.0f / float(config_.scaling_factor), shift, 1.0f);
    return z;
  }

  static Tensor nhwc_view(const Tensor& latents, LatentLayout layout) {
    return layout == LatentLayout::kNCHW ? latents.transpose(1, 2).transpose(2, 3) : latents;
  }

  // Contiguous NHWC latents in compute dtype: the strided copy does the NCHW → NHWC transpose.
  Tensor to_nhwc(const Tensor& latents, LatentLayout layout) {
    validate(latents, layout);
    return nhwc_copy(latents, layout);
  }
  Tensor nhwc_copy(const Tensor& latents, LatentLayout layout) {
    const Tensor src = nhwc_view(latents, layout);
    Tensor z = backend_.empty(src.shape());
    backend_.copy(z, src);
    return z;
  }

  // The parallel decode of validated latents: this rank's rows, decoded as a band, gathered to root.
  Tensor run_parallel(const Tensor& latents, LatentLayout layout, Communicator& group, int root) {
    PD_REQUIRE(root >= -1 && root < group.size(), "parallel VAE decode: root ", root, " is not a rank of ",
               group.describe(), " (or -1 for every rank)");
    const int h_dim = layout == LatentLayout::kNCHW ? 2 : 1;
    const int64_t h = latents.size(h_dim);
    const SequenceShard bands = latent_bands(h, group);
    const Tensor band = nhwc_copy(latents.slice(h_dim, bands.start(group.rank()), bands.count(group.rank())), layout);
    const int scale = config_.scale_factor();
    return gather_bands(backend_, decode_band(backend_, w_, config_, band, h, group), scale * h, scale, group, root);
  }

  Tensor decode_tiles(const Tensor& z, const TileGrid& grid) {
    return tiled_decode(backend_, z, grid, [&](const Tensor& tile) {
      Tensor contiguous = backend_.empty(tile.shape());
      backend_.copy(contiguous, tile);
      return run(contiguous, nullptr);
    });
  }

  // z: contiguous NHWC latents in compute dtype.
  Tensor run(const Tensor& z, const VaeTap& tap) {
    const auto report = [&](const std::string& name, const Tensor& t) {
      if (tap) tap(name, t);
    };
    const int groups = config_.norm_num_groups;
    Tensor x = w_.post_quant.defined() ? conv1x1(backend_, w_.post_quant, z) : z;
    x = conv3x3(backend_, w_.conv_in, x);
    report("conv_in", x);
    x = resnet_block(backend_, w_.mid_resnet0, x, groups);
    if (w_.mid_attention.qkv.defined()) x = attention_block(backend_, w_.mid_attention, x, groups);
    x = resnet_block(backend_, w_.mid_resnet1, x, groups);
    report("mid_block", x);
    for (size_t i = 0; i < w_.up_blocks.size(); ++i) {
      const UpBlock& up = w_.up_blocks[i];
      for (const Resnet& r : up.resnets) x = resnet_block(backend_, r, x, groups);
      if (up.upsample.w.defined()) x = upsample_block(backend_, up.upsample, x);
      report("up_blocks." + std::to_string(i), x);
    }
    Tensor h = backend_.empty(x.shape());
    backend_.group_norm(h, x, w_.norm_out.w, w_.norm_out.b, groups, kNormEps, /*silu=*/true);
    x = Tensor();
    return conv3x3(backend_, w_.conv_out, h);
  }

  Backend& backend_;
  std::string layout_;
  VaeWeights w_;
};

}  // namespace

Tensor decode_with_tap(VaeDecoder& decoder, const Tensor& latents, LatentLayout layout, const VaeTap& tap) {
  auto* model = dynamic_cast<VaeModel*>(&decoder);
  PD_REQUIRE(model != nullptr, "decode_with_tap needs a decoder made by VaeDecoder::load");
  return model->decode_tapped(latents, layout, tap);
}

}  // namespace vae

std::unique_ptr<VaeDecoder> VaeDecoder::load(Backend& backend, const std::string& path,
                                             const std::string& config_json) {
  const vae::VaeSource source = vae::open_source(path, config_json);
  vae::VaeWeights weights = vae::load_weights(backend, source);
  return std::make_unique<vae::VaeModel>(backend, source.config, source.layout, std::move(weights));
}

std::unique_ptr<VaeDecoder> VaeDecoder::random(Backend& backend, const VaeConfig& config, uint64_t seed) {
  // What a config.json is checked for on load (see VaeConfig::from_diffusers_json).
  PD_REQUIRE(config.out_channels > 0 && config.latent_channels > 0 && !config.block_out_channels.empty() &&
                 config.layers_per_block >= 0 && config.norm_num_groups > 0 && config.scaling_factor != 0,
             "random VAE: invalid config ", config.summary());
  for (int w : config.block_out_channels)
    PD_REQUIRE(w > 0 && w % config.norm_num_groups == 0, "random VAE: block width ", w,
               " is not a positive multiple of norm_num_groups ", config.norm_num_groups);
  vae::VaeWeights weights = vae::random_weights(backend, config, seed);
  return std::make_unique<vae::VaeModel>(backend, config, "random", std::move(weights));
}

}  // namespace paradit
