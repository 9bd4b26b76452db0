// FluxPipeline::generate_rank: one rank's part of a generate over a device mesh (SPMD).
//
// Who does what, for a mesh ulysses U × ring R × cfg C × dp P:
// - Prompts: world rank 0 encodes them (its pipeline alone holds the text encoders) and broadcasts the
//   embeddings — once per request, whatever the world size. Encoding is a small part of a request, while T5-XXL
//   held on every GPU would take 9.5 GB each from the transformer; the broadcast is T × 4096 values (4 MB).
// - Images: data-parallel rank d denoises images [start(d), end(d)) of SequenceShard(batch, P), one by one.
// - Tokens: SP rank s (ulysses + U·ring) holds rows flux_shard_rows(T, N, U·R, s) of the joint [text; image]
//   sequence; its latents are only its image rows, from the host noise to the last Euler step.
// - CFG: with C = 2, cfg rank 0 runs the positive branch and cfg rank 1 the negative; they swap velocities
//   every step and take the same step.
// - Tensor parallel: the ranks of a tp group hold the same rows and a share of the transformer each (loaded so,
//   FluxPipelineOptions::tensor_parallel); everything outside the transformer they do alike.
// - PipeFusion (pp > 1): the stages of one SP and tp coordinate form a ring; stage 0 keeps the whole image's
//   latents (flux_pipeline_pipefusion.cpp) and its SP rank 0 of cfg rank 0, tp rank 0 decodes alone.
// - Patch parallel: as sequence parallel, but the SP group attends with stale remote K/V (PatchParallelKv).
// - Decoding (without PipeFusion): each image's rows are gathered once over the SP group; then every rank of its
//   tp × SP × CFG group (which all hold the same latents) decodes a band of the image
//   (VaeDecoder::decode_to_rgb8_parallel) and the group's rank 0 — tp, SP and cfg rank 0 — receives it. With VAE
//   tiling that rank decodes alone, as generate() does.
#include <algorithm>
#include <chrono>

#include "paradit/core/status.h"
#include "paradit/parallel/sequence_shard.h"
#include "paradit/pipeline/latents.h"
#include "pipeline/flux_pipeline_impl.h"

namespace paradit::flux_pipeline {

}  // namespace paradit::flux_pipeline

namespace paradit {

int flux_prompt_encoder_rank(const DeviceMesh& mesh) {
  MeshCoords c{};
  c[int(MeshDim::kPp)] = mesh.degree(MeshDim::kPp) - 1;
  return mesh.rank_of(c);
}

}  // namespace paradit

namespace paradit::flux_pipeline {

void Pipeline::broadcast_prompt(Communicator& world, int root, int tokens, FluxPromptEmbeds& e) {
  if (world.rank() != root) {
    const FluxConfig& fc = transformer_->config();
    e.prompt_embeds = backend_.empty({1, tokens, fc.joint_attention_dim});
    e.pooled = backend_.empty({1, fc.pooled_projection_dim});
  }
  // The transformer takes both in compute dtype, as the encoders give them: the ranks agree on the bytes.
  PD_CHECK(e.prompt_embeds.dtype() == backend_.compute_dtype() && e.pooled.dtype() == backend_.compute_dtype(),
           e.prompt_embeds.desc(), " ", e.pooled.desc());
  world.broadcast(e.prompt_embeds, root);
  world.broadcast(e.pooled, root);
}

FluxRankResult Pipeline::generate_rank(const FluxRequest& req, const RankContext& ctx,
                                       const FluxProgressCallback& progress) {
  PD_REQUIRE(ctx.world != nullptr && ctx.groups != nullptr && ctx.world->size() == ctx.mesh.world() &&
                 ctx.world->rank() == ctx.rank,
             "generate_rank: the rank context does not fit its mesh ", ctx.mesh.str());
  const MeshGroups& g = *ctx.groups;
  const bool leader = ctx.rank == 0;
  FluxRankResult out;
  FluxResult& r = out.result;
  const bool cfg = prepare(req, r, leader);
  const bool cfg_parallel = ctx.mesh.degree(MeshDim::kCfg) == 2;
  PD_REQUIRE(!cfg_parallel || cfg, "CFG parallel runs the positive and the negative prompt side by side: it needs "
             "true CFG (a negative prompt and a CFG scale above 1)");

  backend_.set_region_timing(options_.time_regions);
  (void)backend_.take_region_times();  // what a failed request left behind is not this one's
  backend_.mark_region("encode");
  auto start = std::chrono::steady_clock::now();
  FluxPromptEmbeds positive, negative;
  const int encoder = flux_prompt_encoder_rank(ctx.mesh);
  if (ctx.rank == encoder) {
    positive = encode_request(req, false, r.max_sequence_length, &r.warnings);
    if (cfg) negative = encode_request(req, true, r.max_sequence_length, &r.warnings);
    if (options_.release_text_encoders) release_text_encoders();
  }
  if (ctx.world->size() > 1) {
    broadcast_prompt(*ctx.world, encoder, r.max_sequence_length, positive);
    if (cfg) broadcast_prompt(*ctx.world, encoder, r.max_sequence_length, negative);
  }
  r.timings.encode_s = seconds_since(start);

  const int64_t T = r.max_sequence_length;
  const int64_t N = flux_packed_latent_shape(1, req.height, req.width)[1];
  const bool tensor_parallel = ctx.mesh.degree(MeshDim::kTp) > 1;
  PD_REQUIRE(transformer_->tensor_shard().size == ctx.mesh.degree(MeshDim::kTp) &&
                 transformer_->tensor_shard().rank == ctx.coord(MeshDim::kTp),
             "generate_rank: this pipeline's transformer holds tensor-parallel shard ",
             transformer_->tensor_shard().rank, " of ", transformer_->tensor_shard().size, " but the mesh ",
             ctx.mesh.str(), " makes rank ", ctx.rank, " tp ", ctx.coord(MeshDim::kTp),
             " (load it with FluxPipelineOptions::tensor_parallel)");
  FluxParallel sp{g.ulysses.get(), g.ring.get(), tensor_parallel ? g.tp.get() : nullptr,
                  options_.ulysses_head_chunks, g.sp.get(), options_.ring_kv};
  const bool pipefusion = ctx.mesh.degree(MeshDim::kPp) > 1;
  const FluxStaleOptions& stale = options_.stale;
  PD_REQUIRE(!(pipefusion && stale.patch_parallel), "PipeFusion and patch parallel cannot be combined");
  DenoiseGroups groups;
  groups.rows = pipefusion ? flux_shard_rows(T, N, 1, 0) : flux_shard_rows(T, N, sp.parts(), sp.part());
  if (sp.parts() > 1) {
    if (pipefusion) groups.stage_sp = g.sp.get();
    else if (stale.patch_parallel) groups.patch = g.sp.get();
  }
  if (sp.parts() > 1 || tensor_parallel) groups.sp = &sp;
  if (pipefusion) groups.pp = g.pp.get();
  if (cfg_parallel) groups.cfg = g.cfg.get();
  if (!pipefusion) groups.image = g.vae.get();
  const bool decodes = sp.part() == 0 && ctx.coord(MeshDim::kCfg) == 0 && ctx.coord(MeshDim::kTp) == 0 &&
                       ctx.coord(MeshDim::kPp) == 0;
  const int64_t channels = kFluxLatentChannels * kFluxPatch * kFluxPatch;

  const SequenceShard images(req.batch_count, ctx.mesh.degree(MeshDim::kDp));
  const int dp = ctx.coord(MeshDim::kDp);
  const int64_t first = images.start(dp), count = images.count(dp);
  if (decodes) r.latents = Tensor::empty({count, N, channels}, DType::kF32, cpu_allocator());
  for (int64_t k = 0; k < count; ++k) {
    const int i = int(first + k);
    const uint64_t seed = req.seed + uint64_t(i);
    // The whole image's noise, drawn as generate() draws it, then this rank's rows.
    const Tensor init = req.init_latents.defined() ? req.init_latents.slice(0, i, 1)
                                                   : flux_initial_noise(seed, 1, req.height, req.width);
    const Tensor x = backend_.upload(init.slice(1, groups.rows.image_start, groups.rows.image_count), DType::kF32);

    start = std::chrono::steady_clock::now();
    FluxProgressCallback report;
    if (decodes)
      report = [&](const FluxProgress& p) {
        r.timings.step_s.push_back(p.step_seconds);
        if (progress) progress({i, req.batch_count, p.step, p.steps, p.step_seconds});
      };
    if (pipefusion)
      denoise_pipefusion(x, req.width, req.height, r.steps, req.guidance, positive, cfg ? &negative : nullptr,
                         req.true_cfg_scale, groups, report);
    else
      denoise_rows(x, req.width, req.height, r.steps, req.guidance, positive, cfg ? &negative : nullptr,
                   req.true_cfg_scale, groups, report);

    // The one gather of the image: every SP rank's rows into the whole latents (PipeFusion's stage 0 has them).
    Tensor whole = x;
    if (sp.parts() > 1 && !pipefusion) {
      whole = backend_.empty({1, N, channels}, DType::kF32);
      std::vector<Tensor> pieces(sp.parts());
      for (int p = 0; p < sp.parts(); ++p) {
        const FluxShardRows rows = flux_shard_rows(T, N, sp.parts(), p);
        pieces[p] = whole.slice(1, rows.image_start, rows.image_count);
      }
      g.sp->all_gather_v(pieces, x);
    }
    r.timings.denoise_s += seconds_since(start);
    const bool parallel_decode = g.vae->size() > 1 && !options_.vae_tiling && !pipefusion;
    if (!decodes && !parallel_decode) continue;

    backend_.mark_region("decode: latents");
    start = std::chrono::steady_clock::now();
    std::vector<Rgb8Image> decoded;
    if (parallel_decode) {
      // A decode of a size every rank has decoded before runs stream-ordered (a one-step loop to
      // StreamOrderScope): its halo exchanges and GroupNorm all-reduces no longer stop the host.
      StreamOrderScope order(backend_, g.vae.get(), warm_decode_shapes_, {req.width, req.height, 0, 0});
      order.before_step(0);
      decoded = decode_parallel(whole, req.width, req.height, *g.vae);
      order.finish();
    } else {
      decoded = decode(whole, req.width, req.height);
    }
    r.timings.decode_s += seconds_since(start);
    if (!decodes) continue;
    const Tensor final = backend_.download_f32(whole);
    std::copy_n(final.data_as<float>(), N * channels, r.latents.data_as<float>() + k * N * channels);
    r.images.push_back(std::move(decoded.front()));
    r.seeds.push_back(seed);
    out.batch_indices.push_back(i);
  }
  r.timings.regions = backend_.take_region_times();
  return out;
}

}  // namespace paradit::flux_pipeline
