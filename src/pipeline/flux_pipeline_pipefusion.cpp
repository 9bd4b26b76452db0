// PipeFusion's denoising loop (parallel-methods.md §6): the transformer's blocks cut into stages over the pp ring,
// the image into bands ("patches"), and patch m of step t flowing stage to stage while the stage before already
// runs patch m + 1.
//
// - Items: a warm-up step is one item, the whole sequence (exact); a later step is one item per band. Patch 0
//   carries the text rows with image band 0, so text K/V are recomputed once per step and every later patch
//   of the step attends to this step's text (xDiT instead reuses patch 0's text stream for the other patches).
// - Attention: every stage keeps one K/V buffer per block over the whole joint sequence (PipeFusionKv): the
//   rows of patches already run this step are fresh, the rest are the last step's.
// - Transfers: PipeFusionSchedule gives the tick at which each stage runs each item. At every tick a stage posts
//   one batch on the ring — the output of its last tick to the next stage (the last stage's: the guided velocity
//   to stage 0) and the receive of what the stage before made — computes its item while the batch runs, then
//   waits for it. Stage 0 holds the latents and takes each band's Euler step as its velocity arrives.
// - Sequence parallel within a stage: each item's rows are cut over the stage's SP group; ranks of one SP
//   coordinate form a ring, so every transfer is between equal shapes. Tensor parallel within a stage: the ranks
//   of a tp group run the same items on a share of the stage's weights each; stages of one tp coordinate form a
//   ring. CFG: both branches as a batch of two, or
//   with CFG parallel one per cfg rank, the last stages exchanging velocities per item.
#include <algorithm>
#include <map>

#include "paradit/core/status.h"
#include "paradit/models/flux_stale_kv.h"
#include "paradit/parallel/pipefusion_schedule.h"
#include "paradit/parallel/sequence_shard.h"
#include "paradit/pipeline/latents.h"
#include "paradit/sched/flow_match_euler.h"
#include "pipeline/flux_pipeline_impl.h"

namespace paradit::flux_pipeline {
namespace {

// Rows [first, first + count) of the joint [text; image] sequence split at the text length T.
struct JointRows {
  int64_t first = 0, count = 0;
  int64_t text(int64_t T) const { return first < T ? std::min(first + count, T) - first : 0; }
  int64_t image_first(int64_t T) const { return std::max(first, T) - T; }
  int64_t image(int64_t T) const { return count - text(T); }
};

// [pos; neg] of a [1, ...] pair as one [2, ...] tensor.
Tensor stack_branches(Backend& be, const Tensor& pos, const Tensor& neg) {
  Shape shape = pos.shape();
  shape[0] = 2;
  Tensor both = be.empty(shape, pos.dtype());
  be.copy(both.slice(0, 0, 1), pos);
  be.copy(both.slice(0, 1, 1), neg);
  return both;
}

}  // namespace

void Pipeline::denoise_pipefusion(const Tensor& x, int64_t width, int64_t height, int steps, float guidance,
                                  const FluxPromptEmbeds& positive, const FluxPromptEmbeds* negative,
                                  float true_cfg_scale, const DenoiseGroups& groups,
                                  const FluxProgressCallback& progress) {
  PD_REQUIRE(groups.pp != nullptr, "denoise_pipefusion needs the stage ring");
  Communicator& ring = *groups.pp;
  const int stages = ring.size(), stage = ring.rank();
  const int next = (stage + 1) % stages, prev = (stage + stages - 1) % stages;
  const bool first = stage == 0, last = stage == stages - 1;
  const bool cfg = negative != nullptr && true_cfg_scale > 1.0f;
  PD_REQUIRE(groups.cfg == nullptr || cfg, "CFG parallel needs true CFG (a negative prompt and a CFG scale above 1)");
  const bool batched_cfg = cfg && groups.cfg == nullptr;  // both branches as a batch of 2
  const int64_t B = batched_cfg ? 2 : 1;
  const DType cd = backend_.compute_dtype();
  const FluxConfig& fc = transformer_->config();
  const int64_t C = kFluxLatentChannels * kFluxPatch * kFluxPatch, D = fc.hidden();

  const int64_t h = height / kFluxPixelsPerToken, w = width / kFluxPixelsPerToken, N = h * w;
  const int64_t T = positive.prompt_embeds.size(1);
  if (cfg)
    PD_REQUIRE(negative->prompt_embeds.size(1) == T, "PipeFusion with true CFG needs prompts of one length; got ",
               T, " and ", negative->prompt_embeds.size(1), " T5 tokens");
  FlowMatchEulerScheduler scheduler(scheduler_config_, SigmaSource::kFluxPipeline);
  scheduler.set_timesteps(steps, N);
  const int patches = options_.stale.patches > 0 ? options_.stale.patches : stages;
  PD_REQUIRE(patches <= N, "--patches ", patches, ": a ", width, "x", height, " image has only ", N,
             " tokens to cut into bands (use at most ", N, ")");
  const PipeFusionSchedule plan(steps, std::min(options_.stale.warmup_steps, steps), patches, stages);
  const SequenceShard bands(N, patches);
  const auto rows_of = [&](const PipeFusionItem& it) {
    if (it.patch == PipeFusionItem::kWhole) return JointRows{0, T + N};
    if (it.patch == 0) return JointRows{0, T + bands.count(0)};
    return JointRows{T + bands.start(it.patch), bands.count(it.patch)};
  };

  // This rank's branch (or both), as the transformer takes them.
  const FluxPromptEmbeds& branch = groups.cfg && groups.cfg->rank() == 1 ? *negative : positive;
  const Tensor text = batched_cfg ? stack_branches(backend_, positive.prompt_embeds, negative->prompt_embeds)
                                  : branch.prompt_embeds;
  const Tensor pooled = batched_cfg ? stack_branches(backend_, positive.pooled, negative->pooled) : branch.pooled;
  const Tensor img_ids = image_ids(h, w), txt_ids = zero_text_ids(T);
  PipeFusionKv kv(groups.stage_sp);
  const int sp_parts = groups.stage_sp ? groups.stage_sp->size() : 1;

  // This rank's share of an item's rows.
  const auto local_rows = [&](const JointRows& r, int part) {
    const SequenceShard cut(r.count, sp_parts);
    return JointRows{r.first + cut.start(part), cut.count(part)};
  };
  const int my_part = groups.stage_sp ? groups.stage_sp->rank() : 0;

  // Runs item i at this stage: the stream for the next stage, or (last stage) the guided velocity of the item's
  // image rows, f32 [1, image rows, C].
  std::map<int, Tensor> inbox;  // streams received, by item
  const auto compute = [&](int i) -> Tensor {
    const PipeFusionItem& it = plan.items()[size_t(i)];
    const JointRows whole = rows_of(it), mine = local_rows(whole, my_part);
    kv.set_patch(T + N, whole.first, whole.count);
    FluxPartInputs in;
    in.first_row = mine.first;
    in.text_rows = mine.text(T);
    in.image_rows = mine.image(T);
    in.pooled_projections = pooled;
    in.timestep.assign(size_t(B), scheduler.timestep(it.step) / 1000.0f);
    if (fc.guidance_embeds) in.guidance.assign(size_t(B), guidance);
    in.img_ids = img_ids;
    in.txt_ids = txt_ids;
    in.attention = &kv;
    in.tp = groups.sp ? groups.sp->tp : nullptr;
    if (first) {
      in.hidden_states = backend_.empty({B, in.image_rows, C}, cd);
      const Tensor rows = x.slice(1, mine.image_first(T), in.image_rows);
      for (int64_t b = 0; b < B; ++b) backend_.copy(in.hidden_states.slice(0, b, 1), rows);
      in.encoder_hidden_states = text.slice(1, in.text_rows > 0 ? mine.first : 0, in.text_rows);
    } else {
      auto got = inbox.find(i);
      PD_CHECK(got != inbox.end(), "PipeFusion stage ", stage, " has no input for item ", i);
      in.stream = got->second;
      inbox.erase(got);
    }
    const Tensor y = transformer_->forward_part(in);
    if (!last) return y;

    // The whole item's velocity on every SP rank of the stage (each sends it to its stage-0 peer).
    Tensor v = y;
    const int64_t image_first = whole.image_first(T), image_rows = whole.image(T);
    if (sp_parts > 1) {
      v = backend_.empty({B, image_rows, C}, cd);
      std::vector<Tensor> pieces(static_cast<size_t>(sp_parts));
      for (int p = 0; p < sp_parts; ++p) {
        const JointRows r = local_rows(whole, p);
        pieces[size_t(p)] = v.slice(1, r.image_first(T) - image_first, r.image(T));
      }
      groups.stage_sp->all_gather_v(pieces, y);
    }
    Tensor pos = v.slice(0, 0, 1), neg;
    if (batched_cfg) {
      neg = v.slice(0, 1, 1);
    } else if (groups.cfg) {
      const Tensor pair = backend_.empty({2, 1, image_rows, C}, cd);
      const Tensor branches[2] = {pair.select(0, 0), pair.select(0, 1)};
      groups.cfg->all_gather_v(branches, v);
      pos = branches[0];
      neg = branches[1];
    }
    const Tensor velocity = backend_.empty({1, image_rows, C}, DType::kF32);
    if (cfg) {
      // neg + s·(pos − neg), in diffusers' order of operations.
      const Tensor diff = backend_.empty({1, image_rows, C}, DType::kF32);
      backend_.axpby(diff, pos, 1.0f, neg, -1.0f);
      backend_.axpby(velocity, neg, 1.0f, diff, true_cfg_scale);
    } else {
      backend_.copy(velocity, pos);
    }
    return velocity;
  };

  // Stage 0: the Euler step of an item's band as its velocity arrives, and the progress of whole steps.
  std::vector<int> pending(size_t(steps), 0);
  for (const PipeFusionItem& it : plan.items()) ++pending[size_t(it.step)];
  auto step_start = std::chrono::steady_clock::now();
  const auto apply = [&](int i, const Tensor& velocity) {
    const PipeFusionItem& it = plan.items()[size_t(i)];
    const JointRows r = rows_of(it);
    const Tensor band = x.slice(1, r.image_first(T), r.image(T));
    backend_.axpby(band, band, 1.0f, velocity, scheduler.dt(it.step));
    if (--pending[size_t(it.step)] == 0 && progress) {
      backend_.synchronize();
      progress({0, 1, it.step + 1, steps, seconds_since(step_start)});
      step_start = std::chrono::steady_clock::now();
    }
  };

  Tensor output;  // what this stage made at the last tick, sent at this one
  for (int tick = 0; tick < plan.ticks(); ++tick) {
    std::vector<P2POp> ops;
    if (tick > 0 && plan.item_at(stage, tick - 1) >= 0) ops.push_back(P2POp::send(output, next));
    const int incoming = tick > 0 ? plan.item_at(prev, tick - 1) : -1;
    Tensor received;
    if (incoming >= 0) {
      const JointRows whole = rows_of(plan.items()[size_t(incoming)]);
      received = first ? backend_.empty({1, whole.image(T), C}, DType::kF32)
                       : backend_.empty({B, local_rows(whole, my_part).count, D}, cd);
      ops.push_back(P2POp::recv(received, prev));
    }
    std::unique_ptr<CommRequest> transfer = ops.empty() ? nullptr : ring.start(std::move(ops));
    const int item = plan.item_at(stage, tick);
    Tensor made = item >= 0 ? compute(item) : Tensor();
    if (transfer) transfer->wait();
    output = made;
    if (incoming < 0) continue;
    if (first) apply(incoming, received);
    else inbox.emplace(incoming, received);
  }
  PD_CHECK(inbox.empty(), "PipeFusion stage ", stage, " ended with unused inputs");
}

}  // namespace paradit::flux_pipeline
