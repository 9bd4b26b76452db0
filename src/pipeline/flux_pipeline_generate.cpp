// FluxPipeline::generate: encode once, then denoise and decode each image of the batch.
#include <algorithm>
#include <cmath>

#include "paradit/core/log.h"
#include "paradit/core/status.h"
#include "paradit/pipeline/latents.h"
#include "pipeline/flux_pipeline_impl.h"

namespace paradit {

void check_flux_image_size(int64_t width, int64_t height) {
  for (const auto& [what, v] : {std::pair<const char*, int64_t>{"width", width}, {"height", height}}) {
    if (v >= kFluxPixelsPerToken && v % kFluxPixelsPerToken == 0) continue;
    const int64_t below = std::max(kFluxPixelsPerToken, v / kFluxPixelsPerToken * kFluxPixelsPerToken);
    PD_THROW(kInvalidArgument, "image ", what, " ", v, " is not a positive multiple of ", kFluxPixelsPerToken,
             " (FLUX packs 2x2 latents of an 8x VAE); try ", below, " or ", below + kFluxPixelsPerToken);
  }
}

bool uses_true_cfg(const FluxRequest& request) {
  const bool negative = request.negative_prompt.has_value() || request.negative_prompt_tokens.has_value();
  return negative && request.true_cfg_scale > 1.0f;
}

namespace flux_pipeline {
namespace {

void warn(FluxResult& r, std::string message) {
  PD_LOG(kWarn, message);
  r.warnings.push_back(std::move(message));
}

// Packed f32 latents [B, N, 64] of a width×height image, on the host or on the backend's device, checked, as the
// unpacked NHWC latents [B, h, w, 16] f32 on the device that the VAE takes: FluxPipeline._unpack_latents as one
// strided copy on the device, packed[b, i·w/2 + j, c·4 + py·2 + px] = latent[b, 2i + py, 2j + px, c].
Tensor vae_latents(Backend& backend, const Tensor& latents, int64_t width, int64_t height) {
  check_flux_image_size(width, height);
  PD_REQUIRE(latents.defined() && (latents.device().is_cpu() || latents.device() == backend.device()) &&
                 latents.dim() == 3 && latents.dtype() == DType::kF32,
             "decode takes f32 latents [B, N, 64] on the host or on ", backend.device().str(), ", got ",
             latents.defined() ? latents.desc() : std::string("undefined"));
  const Shape packed = flux_packed_latent_shape(latents.size(0), height, width);
  PD_REQUIRE(latents.shape() == packed, "decode: latents ", shape_str(latents.shape()), " do not fit a ", width,
             "x", height, " image (expected ", shape_str(packed), ")");
  Tensor here = latents;  // contiguous on the device, for the view below
  if (latents.device() != backend.device() || !latents.is_contiguous()) {
    here = backend.empty(latents.shape(), DType::kF32);
    backend.copy(here, latents);
  }
  const int64_t B = latents.size(0), h2 = height / kFluxPixelsPerToken, w2 = width / kFluxPixelsPerToken;
  const int64_t C = kFluxLatentChannels;
  const Tensor by_patch = here.view({B, h2, w2, C, kFluxPatch, kFluxPatch})  // b, i, j, c, py, px
                              .transpose(3, 4)                               // b, i, j, py, c, px
                              .transpose(4, 5)                               // b, i, j, py, px, c
                              .transpose(2, 3);                              // b, i, py, j, px, c
  Tensor z = backend.empty({B, h2, kFluxPatch, w2, kFluxPatch, C}, DType::kF32);
  backend.copy(z, by_patch);
  return z.view({B, h2 * kFluxPatch, w2 * kFluxPatch, C});
}

}  // namespace

std::vector<Rgb8Image> Pipeline::decode(const Tensor& latents, int64_t width, int64_t height) {
  VaeDecodeOptions options;
  options.layout = LatentLayout::kNHWC;
  options.tiled = options_.vae_tiling;
  return vae_->decode_to_rgb8(vae_latents(backend_, latents, width, height), options);
}

std::vector<Rgb8Image> Pipeline::decode_parallel(const Tensor& latents, int64_t width, int64_t height,
                                                 Communicator& group) {
  VaeParallelOptions options;
  options.layout = LatentLayout::kNHWC;
  return vae_->decode_to_rgb8_parallel(vae_latents(backend_, latents, width, height), group, options);
}

bool Pipeline::prepare(const FluxRequest& req, FluxResult& r, bool report) const {
  check_flux_image_size(req.width, req.height);
  PD_REQUIRE(req.batch_count >= 1, "batch count must be at least 1, got ", req.batch_count);
  PD_REQUIRE(std::isfinite(req.guidance) && std::isfinite(req.true_cfg_scale),
             "guidance and CFG scale must be finite numbers");
  PD_REQUIRE(req.steps >= 0, "steps must be at least 1 (0 for the default), got ", req.steps);
  PD_REQUIRE(req.max_sequence_length >= 0, "max sequence length must be in 1..512 (0 for the default), got ",
             req.max_sequence_length);
  r.steps = req.steps > 0 ? req.steps : default_steps();
  r.max_sequence_length = req.max_sequence_length > 0 ? req.max_sequence_length : default_max_sequence_length();
  if (req.prompt_tokens) {
    const int t5 = int(req.prompt_tokens->t5.size());
    PD_REQUIRE(req.max_sequence_length == 0 || req.max_sequence_length == t5, "the prompt's ", t5,
               " T5 token ids set the sequence length, but max_sequence_length is ", req.max_sequence_length);
    r.max_sequence_length = t5;
  }
  if (req.negative_prompt_tokens)
    PD_REQUIRE(int(req.negative_prompt_tokens->t5.size()) == r.max_sequence_length, "the negative prompt has ",
               req.negative_prompt_tokens->t5.size(), " T5 token ids but the prompt's sequence is ",
               r.max_sequence_length, " long");
  const Shape packed = flux_packed_latent_shape(req.batch_count, req.height, req.width);
  if (req.init_latents.defined())
    PD_REQUIRE(req.init_latents.device().is_cpu() && req.init_latents.dtype() == DType::kF32 &&
                   req.init_latents.is_contiguous() && req.init_latents.shape() == packed,
               "init latents must be contiguous host f32 ", shape_str(packed), " for ", req.batch_count,
               " image(s) of ", req.width, "x", req.height, ", got ", req.init_latents.desc());

  const bool cfg = uses_true_cfg(req);
  const bool negative = req.negative_prompt || req.negative_prompt_tokens;
  if (report && negative && !cfg)
    warn(r, "the negative prompt is ignored: true CFG needs a CFG scale above 1");
  if (report && !negative && req.true_cfg_scale > 1.0f)
    warn(r, "the CFG scale is ignored without a negative prompt (FLUX.1-dev is guided by --guidance instead)");
  return cfg;
}

FluxResult Pipeline::generate(const FluxRequest& req, const FluxProgressCallback& progress) {
  FluxResult r;
  const bool cfg = prepare(req, r, true);
  const Shape packed = flux_packed_latent_shape(req.batch_count, req.height, req.width);

  auto start = std::chrono::steady_clock::now();
  const FluxPromptEmbeds positive = encode_request(req, false, r.max_sequence_length, &r.warnings);
  FluxPromptEmbeds negative;
  if (cfg) negative = encode_request(req, true, r.max_sequence_length, &r.warnings);
  if (options_.release_text_encoders) release_text_encoders();
  r.timings.encode_s = seconds_since(start);

  r.latents = Tensor::empty(packed, DType::kF32, cpu_allocator());
  const int64_t per_image = packed[1] * packed[2];
  for (int i = 0; i < req.batch_count; ++i) {
    const uint64_t seed = req.seed + uint64_t(i);
    r.seeds.push_back(seed);
    const Tensor init = req.init_latents.defined() ? req.init_latents.slice(0, i, 1)
                                                   : flux_initial_noise(seed, 1, req.height, req.width);
    start = std::chrono::steady_clock::now();
    const Tensor final = denoise(init, req.width, req.height, r.steps, req.guidance, positive,
                                 cfg ? &negative : nullptr, req.true_cfg_scale, [&](const FluxProgress& p) {
                                   r.timings.step_s.push_back(p.step_seconds);
                                   if (progress) progress({i, req.batch_count, p.step, p.steps, p.step_seconds});
                                 });
    r.timings.denoise_s += seconds_since(start);
    std::copy_n(final.data_as<float>(), per_image, r.latents.data_as<float>() + i * per_image);

    start = std::chrono::steady_clock::now();
    std::vector<Rgb8Image> images = decode(final, req.width, req.height);
    r.timings.decode_s += seconds_since(start);
    r.images.push_back(std::move(images.front()));
  }
  return r;
}

}  // namespace flux_pipeline
}  // namespace paradit
