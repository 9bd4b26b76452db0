// The denoising loop of FluxPipeline.__call__: FlowMatchEuler steps of the transformer, optional true CFG — on
// every row of the image, or on this rank's rows with sequence-parallel attention and CFG-parallel branches.
#include <algorithm>

#include "paradit/core/status.h"
#include "paradit/models/flux_stale_kv.h"
#include "paradit/pipeline/latents.h"
#include "paradit/sched/flow_match_euler.h"
#include "pipeline/flux_pipeline_impl.h"

namespace paradit::flux_pipeline {

Tensor zero_text_ids(int64_t tokens) {
  Tensor ids = Tensor::empty({tokens, 3}, DType::kF32, cpu_allocator());
  std::fill_n(ids.data_as<float>(), tokens * 3, 0.0f);
  return ids;
}

namespace {

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
  DenoiseGroups alone;
  alone.rows.image_count = packed[1];
  const Tensor x = backend_.upload(latents, DType::kF32);
  denoise_rows(x, width, height, steps, guidance, positive, negative, true_cfg_scale, alone, progress);
  return backend_.download_f32(x);
}

void Pipeline::denoise_rows(const Tensor& x, int64_t width, int64_t height, int steps, float guidance,
                            const FluxPromptEmbeds& positive, const FluxPromptEmbeds* negative, float true_cfg_scale,
                            const DenoiseGroups& groups, const FluxProgressCallback& progress) {
  check_flux_image_size(width, height);
  PD_REQUIRE(steps >= 1, "steps must be at least 1, got ", steps);
  require_embeds(positive, "positive");
  const bool cfg = negative != nullptr && true_cfg_scale > 1.0f;
  if (cfg) require_embeds(*negative, "negative");
  PD_REQUIRE(groups.cfg == nullptr || cfg, "CFG parallel needs true CFG (a negative prompt and a CFG scale above 1)");

  const int64_t h = height / kFluxPixelsPerToken, w = width / kFluxPixelsPerToken;
  FlowMatchEulerScheduler scheduler(scheduler_config_, SigmaSource::kFluxPipeline);
  scheduler.set_timesteps(steps, h * w);

  // The latents stay f32 between steps; the transformer reads a compute-dtype copy (the same tensor on f32
  // backends).
  const FluxShardRows& rows = groups.rows;
  const Shape local = {1, rows.image_count, kFluxLatentChannels * kFluxPatch * kFluxPatch};
  PD_CHECK(x.shape() == local && x.dtype() == DType::kF32 && x.device() == backend_.device(), x.desc());
  const DType cd = backend_.compute_dtype();
  const Tensor x_in = cd == DType::kF32 ? x : backend_.empty(local, cd);

  // Each prompt's text rows of this rank (under sequence parallelism both prompts have the length the rows were
  // cut for); every rank holds the pooled vectors.
  if (groups.sp && cfg)
    PD_REQUIRE(negative->prompt_embeds.size(1) == positive.prompt_embeds.size(1), "sequence-parallel CFG needs ",
               "prompts of one length; got ", positive.prompt_embeds.size(1), " and ",
               negative->prompt_embeds.size(1), " T5 tokens");
  const auto text_rows = [&](const FluxPromptEmbeds& e) {
    return groups.sp ? e.prompt_embeds.slice(1, rows.text_start, rows.text_count) : e.prompt_embeds;
  };
  FluxInputs in;
  in.hidden_states = x_in;
  in.encoder_hidden_states = text_rows(positive);
  in.pooled_projections = positive.pooled;
  in.img_ids = image_ids(h, w);
  in.txt_ids = zero_text_ids(positive.prompt_embeds.size(1));
  // FluxPipeline passes guidance only to models with a guidance embedding (dev); schnell has none.
  if (transformer_->config().guidance_embeds) in.guidance = {guidance};
  FluxInputs in_neg = in;
  Tensor diff, guided, pair;
  if (cfg) {
    in_neg.encoder_hidden_states = text_rows(*negative);
    in_neg.pooled_projections = negative->pooled;
    in_neg.txt_ids = zero_text_ids(negative->prompt_embeds.size(1));
    diff = backend_.empty(local, DType::kF32);
    guided = backend_.empty(local, DType::kF32);
    // CFG parallel: both branches' velocities side by side, positive first (cfg rank order).
    if (groups.cfg) pair = backend_.empty({2, local[0], local[1], local[2]}, cd);
  }
  // Patch parallel: one set of kept K/V per branch this rank runs.
  const int warmup = options_.stale.warmup_steps;
  std::unique_ptr<PatchParallelKv> kv_pos, kv_neg;
  if (groups.patch) {
    const int64_t S = positive.prompt_embeds.size(1) + h * w;
    kv_pos = std::make_unique<PatchParallelKv>(*groups.patch, S);
    if (cfg && !groups.cfg) kv_neg = std::make_unique<PatchParallelKv>(*groups.patch, S);
  }
  const auto predict = [&](const FluxInputs& inputs, PatchParallelKv* kv) {
    if (kv) {
      FluxPartInputs part;
      part.first_row = rows.text_count > 0 ? rows.text_start : inputs.txt_ids.size(0) + rows.image_start;
      part.text_rows = rows.text_count;
      part.image_rows = rows.image_count;
      part.hidden_states = inputs.hidden_states;
      part.encoder_hidden_states = inputs.encoder_hidden_states;
      part.pooled_projections = inputs.pooled_projections;
      part.timestep = inputs.timestep;
      part.guidance = inputs.guidance;
      part.img_ids = inputs.img_ids;
      part.txt_ids = inputs.txt_ids;
      part.attention = kv;
      part.tp = groups.sp ? groups.sp->tp : nullptr;
      return transformer_->forward_part(part);
    }
    return groups.sp ? transformer_->forward(inputs, *groups.sp) : transformer_->forward(inputs);
  };

  // Every step's conditioning of the branches this rank runs, planned at once (FluxTransformer::
  // plan_conditionings): the blocks' modulation weights are read once per request, not once per step. Patch
  // parallel's forwards (forward_part) compute their own.
  const bool planned = !groups.patch;
  const int per_step = cfg && !groups.cfg ? 2 : 1;
  struct PlanScope {
    FluxTransformer& t;
    ~PlanScope() { t.clear_plan(); }
  } plan_scope{*transformer_};
  if (planned) {
    // Under CFG parallel, cfg rank 1 runs the negative branch alone.
    const Tensor& first = groups.cfg && groups.cfg->rank() == 1 ? in_neg.pooled_projections : in.pooled_projections;
    std::vector<FluxConditioning> conditionings;
    for (int i = 0; i < steps; ++i) {
      const std::vector<float> t = {scheduler.timestep(i) / 1000.0f};
      conditionings.push_back({first, t, in.guidance});
      if (per_step == 2) conditionings.push_back({in_neg.pooled_projections, t, in_neg.guidance});
    }
    transformer_->plan_conditionings(conditionings, groups.sp);
  }

  StreamOrderScope order(backend_, groups.image, warm_loop_shapes_,
                         {width, height, positive.prompt_embeds.size(1), cfg ? 1 : 0});
  for (int i = 0; i < steps; ++i) {
    order.before_step(i);
    const auto start = std::chrono::steady_clock::now();
    if (x_in.data() != x.data()) backend_.copy(x_in, x);
    // FluxPipeline passes t/1000 with t = σ·1000 already rounded to f32: not always σ to the last bit.
    in.timestep = in_neg.timestep = {scheduler.timestep(i) / 1000.0f};
    if (planned) {
      in.planned = per_step * i;
      in_neg.planned = groups.cfg ? per_step * i : per_step * i + 1;
    }
    for (PatchParallelKv* kv : {kv_pos.get(), kv_neg.get()})
      if (kv) kv->set_synchronous(i < warmup);
    Tensor v, v_neg;
    if (groups.cfg) {
      // One branch here, the other on the CFG peer; one exchange gives both ranks both velocities, and both
      // then take the same step, so their latents stay equal.
      const Tensor branches[2] = {pair.select(0, 0), pair.select(0, 1)};
      groups.cfg->all_gather_v(branches, predict(groups.cfg->rank() == 0 ? in : in_neg, kv_pos.get()));
      v = branches[0];
      v_neg = branches[1];
    } else {
      v = predict(in, kv_pos.get());
      if (cfg) v_neg = predict(in_neg, kv_neg.get());
    }
    backend_.mark_region("CFG, Euler step, step end");
    if (cfg) {
      // neg + s·(pos − neg), in diffusers' order of operations.
      backend_.axpby(diff, v, 1.0f, v_neg, -1.0f);
      backend_.axpby(guided, v_neg, 1.0f, diff, true_cfg_scale);
      v = guided;
    }
    backend_.axpby(x, x, 1.0f, v, scheduler.dt(i));
    if (progress) {
      // So that the step time is the step's, not its launch's; with transfers in flight, a timed wait.
      if (groups.image) groups.image->wait_all();
      backend_.synchronize();
      progress({0, 1, i + 1, steps, seconds_since(start)});
    }
  }
  // Nothing stays in flight past the loop.
  for (PatchParallelKv* kv : {kv_pos.get(), kv_neg.get()})
    if (kv) kv->finish();
  order.finish();
}

}  // namespace paradit::flux_pipeline
