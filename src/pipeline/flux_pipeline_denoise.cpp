// The denoising loop of FluxPipeline.__call__: FlowMatchEuler steps of the transformer, optional true CFG.
#include <algorithm>

#include "paradit/core/status.h"
#include "paradit/pipeline/latents.h"
#include "paradit/sched/flow_match_euler.h"
#include "pipeline/flux_pipeline_impl.h"

namespace paradit::flux_pipeline {
namespace {

Tensor zero_text_ids(int64_t tokens) {
  Tensor ids = Tensor::empty({tokens, 3}, DType::kF32, cpu_allocator());
  std::fill_n(ids.data_as<float>(), tokens * 3, 0.0f);
  return ids;
}

void require_embeds(const FluxPromptEmbeds& e, const char* which) {
  PD_REQUIRE(e.prompt_embeds.defined() && e.pooled.defined(), "denoise: the ", which,
             " prompt embeddings are undefined (encode the prompt first)");
}

}  // namespace

Tensor Pipeline::denoise(const Tensor& latents, int64_t width, int64_t height, int steps, float guidance,
                         const FluxPromptEmbeds& positive, const FluxPromptEmbeds* negative, float true_cfg_scale,
                         const FluxProgressCallback& progress) {
  check_flux_image_size(width, height);
  const Shape packed = flux_packed_latent_shape(1, height, width);
  PD_REQUIRE(latents.defined() && latents.device().is_cpu() && latents.dtype() == DType::kF32 &&
                 latents.shape() == packed && latents.is_contiguous(),
             "denoise takes contiguous host f32 latents ", shape_str(packed), " for a ", width, "x", height,
             " image, got ", latents.defined() ? latents.desc() : std::string("undefined"));
  PD_REQUIRE(steps >= 1, "steps must be at least 1, got ", steps);
  require_embeds(positive, "positive");
  const bool cfg = negative != nullptr && true_cfg_scale > 1.0f;
  if (cfg) require_embeds(*negative, "negative");

  const int64_t h = height / kFluxPixelsPerToken, w = width / kFluxPixelsPerToken;
  FlowMatchEulerScheduler scheduler(scheduler_config_, SigmaSource::kFluxPipeline);
  scheduler.set_timesteps(steps, h * w);

  // The latents stay f32 between steps; the transformer reads a compute-dtype copy (the same tensor on f32
  // backends).
  Tensor x = backend_.upload(latents, DType::kF32);
  const DType cd = backend_.compute_dtype();
  const Tensor x_in = cd == DType::kF32 ? x : backend_.empty(packed, cd);

  FluxInputs in;
  in.hidden_states = x_in;
  in.encoder_hidden_states = positive.prompt_embeds;
  in.pooled_projections = positive.pooled;
  in.img_ids = image_ids(h, w);
  in.txt_ids = zero_text_ids(positive.prompt_embeds.size(1));
  // FluxPipeline passes guidance only to models with a guidance embedding (dev); schnell has none.
  if (transformer_->config().guidance_embeds) in.guidance = {guidance};
  FluxInputs in_neg = in;
  Tensor diff, guided;
  if (cfg) {
    in_neg.encoder_hidden_states = negative->prompt_embeds;
    in_neg.pooled_projections = negative->pooled;
    in_neg.txt_ids = zero_text_ids(negative->prompt_embeds.size(1));
    diff = backend_.empty(packed, DType::kF32);
    guided = backend_.empty(packed, DType::kF32);
  }

  for (int i = 0; i < steps; ++i) {
    const auto start = std::chrono::steady_clock::now();
    if (x_in.data() != x.data()) backend_.copy(x_in, x);
    // FluxPipeline passes t/1000 with t = σ·1000 already rounded to f32: not always σ to the last bit.
    in.timestep = in_neg.timestep = {scheduler.timestep(i) / 1000.0f};
    Tensor v = transformer_->forward(in);
    if (cfg) {
      // neg + s·(pos − neg), in diffusers' order of operations.
      const Tensor v_neg = transformer_->forward(in_neg);
      backend_.axpby(diff, v, 1.0f, v_neg, -1.0f);
      backend_.axpby(guided, v_neg, 1.0f, diff, true_cfg_scale);
      v = guided;
    }
    backend_.axpby(x, x, 1.0f, v, scheduler.dt(i));
    if (progress) {
      backend_.synchronize();  // so that the step time is the step's, not its launch's
      progress({0, 1, i + 1, steps, seconds_since(start)});
    }
  }
  return backend_.download_f32(x);
}

}  // namespace paradit::flux_pipeline
