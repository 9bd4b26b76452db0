// The decoder half of diffusers' AutoencoderKL (FLUX.1, SD3/SD3.5 and SD1.x VAEs), written once against the
// Backend op set.
//
// Activations are NHWC ([B, H, W, C], channels contiguous), so convolutions and GroupNorm read channels as
// the contiguous dimension and the mid-block attention sees the image as H·W tokens of width C with no copy.
// Weights are converted once at load time: PyTorch convolutions [Cout, Cin, kh, kw] become [Cout, kh, kw, Cin],
// 1×1 convolutions (post_quant_conv, conv_shortcut) become Linear [Cout, Cin], and the attention's q, k, v
// projections are fused into one [3C, C] Linear.
//
// Parallel decode (decode_parallel): the image is cut by height into bands, one per rank of a Communicator
// group, and every rank runs the whole decoder on its band only — so each rank's activations are about 1/P of
// the serial decode's, and an image too large for one device's memory decodes on several. Exactly the serial
// result (up to rounding: fp32 on CPU ranks within 1e-5 relative):
// - rank r owns latent rows SequenceShard(h, P) part r (uneven bands are fine; with P > h the last ranks own
//   none and only take part in the collectives); every upsampling doubles every band;
// - before each 3×3 convolution a rank swaps one halo row with each neighbour (one batched point-to-point
//   exchange: it cannot deadlock), so the convolution sees what it would see in the whole image;
// - GroupNorm statistics are image-wide: each rank sums its band (Backend::group_norm_sums), the sums are
//   all-reduced in f32 — once about 0 for the mean, once about that mean so the variance has no cancellation —
//   and each rank normalises its band with them (Backend::group_norm_apply);
// - the mid-block attention is exact: the ranks all-gather K and V (at the lowest resolution, 1/64 of the
//   pixels — the only full-size tensor a rank holds), and each rank's queries attend to every key.
// The output bands are gathered to one rank (or all).
//
// Accepted checkpoints: a diffusers VAE folder (config.json + diffusion_pytorch_model.safetensors), a diffusers
// pipeline root (its vae/ folder is used), or one LDM/BFL single file (ae.safetensors: `decoder.*` names,
// optionally behind a "first_stage_model." or "vae." prefix; `encoder.*` and `quant_conv` are ignored).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "paradit/backend/backend.h"

namespace paradit {

class Communicator;

// The keys of diffusers' AutoencoderKL config.json that the decoder needs.
struct VaeConfig {
  int out_channels = 3;
  int latent_channels = 16;
  std::vector<int> block_out_channels = {128, 256, 512, 512};
  int layers_per_block = 2;
  int norm_num_groups = 32;
  double scaling_factor = 0.3611;
  double shift_factor = 0.1159;  // null in SD1.x configs: 0
  bool use_post_quant_conv = false;
  bool mid_block_add_attention = true;
  int sample_size = 1024;  // diffusers' tile_sample_min_size for tiled decoding

  static VaeConfig flux();  // FLUX.1 (dev, schnell): 16 channels, scaling 0.3611, shift 0.1159
  static VaeConfig sd3();   // SD3 / SD3.5: the same network, scaling 1.5305, shift 0.0609
  // A diffusers AutoencoderKL config.json (its text). Absent keys take AutoencoderKL.__init__'s defaults (note:
  // use_post_quant_conv defaults to true there). Throws kCorruptData / kInvalidArgument / kUnimplemented naming
  // `source` and the key.
  static VaeConfig from_diffusers_json(const std::string& json_text, const std::string& source);
  // 2^(len(block_out_channels) − 1): pixels per latent along each axis (8 for every published VAE).
  int scale_factor() const;
  // "latent 16, blocks [128, 256, 512, 512] x 2, groups 32, scaling 0.3611, shift 0.1159" (messages).
  std::string summary() const;
  bool operator==(const VaeConfig&) const = default;
};

enum class LatentLayout {
  kNCHW,  // [B, latent_channels, h, w] as diffusers and the FLUX pipeline's unpacked latents have them
  kNHWC,  // [B, h, w, latent_channels]
};

struct VaeDecodeOptions {
  LatentLayout layout = LatentLayout::kNCHW;
  // diffusers' enable_tiling(): latents larger than one tile (in either axis) are decoded tile by tile with
  // overlapping edges blended linearly, exactly as AutoencoderKL.tiled_decode does. The tile edge in pixels is
  // tile_sample_size (0: config.sample_size, what diffusers uses), overlap factor 0.25 (diffusers' fixed
  // tile_overlap_factor). Tiles are decoded on the device; the 3-channel blend runs on the host.
  bool tiled = false;
  int tile_sample_size = 0;
};

struct VaeParallelOptions {
  LatentLayout layout = LatentLayout::kNCHW;
  // The group rank that receives the whole image; -1: every rank does.
  int root = 0;
};

// An 8-bit image, rows top to bottom, pixels interleaved (HWC).
struct Rgb8Image {
  int64_t height = 0, width = 0, channels = 3;
  std::vector<uint8_t> pixels;  // height · width · channels
};

class VaeDecoder {
 public:
  // Opens the checkpoint at `path` and uploads the decoder's weights to `backend` in its compute dtype.
  // config_json (a path to a config.json, a folder holding one, or the JSON text) overrides the folder's own
  // config; a single LDM file carries none, so without config_json its widths, depth and latent channels are
  // inferred from the tensor shapes, with norm_num_groups 32 and the FLUX scaling (0.3611) and shift (0.1159)
  // for 16 latent channels, the SD1.x ones (0.18215, 0) for 4, and an error asking for config_json otherwise.
  // Every tensor is checked against the config: a missing or misshapen one throws Error naming the file and
  // the tensor as stored.
  static std::unique_ptr<VaeDecoder> load(Backend& backend, const std::string& path,
                                          const std::string& config_json = "");
  // Random weights for benchmarks (same shapes, memory and arithmetic as a loaded decoder of this config), with
  // Backend::fill_random's values seeded per tensor name: kernels ~ 1/√fan_in, biases small, GroupNorm scales ≈ 1.
  // Throws kInvalidArgument for a config the decoder cannot run.
  static std::unique_ptr<VaeDecoder> random(Backend& backend, const VaeConfig& config, uint64_t seed);

  virtual ~VaeDecoder() = default;
  const VaeConfig& config() const { return config_; }
  virtual const std::string& layout() const = 0;  // "diffusers" or "ldm" (the file's names); "random"
  virtual size_t weight_bytes() const = 0;        // of the weights held on the device

  // vae.decode(latents).sample: the raw decoder output (nominally in [−1, 1]), NHWC [B, 8h, 8w, out_channels]
  // in compute dtype on the device. latents: on the device, any dtype, in options.layout; the caller has already
  // applied z/scaling + shift (this is the model, not the pipeline).
  virtual Tensor decode(const Tensor& latents, const VaeDecodeOptions& options = {}) = 0;

  // FluxPipeline's (and StableDiffusion3Pipeline's) last step: z = latents/scaling + shift, y = decode(z),
  // then VaeImageProcessor.postprocess: (y/2 + 0.5).clamp(0, 1), ×255, round half to even → one image per batch
  // entry, on the host.
  virtual std::vector<Rgb8Image> decode_to_rgb8(const Tensor& latents, const VaeDecodeOptions& options = {}) = 0;

  // decode() split by height over `group` (see the top of this file): a collective of every rank of group, each
  // passing the same whole latents (they are small; a rank reads only its band's rows) and a decoder of the same
  // weights on its own device. Returns decode()'s result on options.root (every rank when root is −1), an
  // undefined tensor elsewhere. No tiling: each rank holds about 1/P of the activations instead.
  virtual Tensor decode_parallel(const Tensor& latents, Communicator& group,
                                 const VaeParallelOptions& options = {}) = 0;
  // decode_to_rgb8() the same way: the images on options.root (every rank when −1), none elsewhere.
  virtual std::vector<Rgb8Image> decode_to_rgb8_parallel(const Tensor& latents, Communicator& group,
                                                         const VaeParallelOptions& options = {}) = 0;

 protected:
  explicit VaeDecoder(VaeConfig config) : config_(std::move(config)) {}
  VaeConfig config_;
};

}  // namespace paradit
