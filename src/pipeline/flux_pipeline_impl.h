// The FluxPipeline implementation, split over flux_pipeline_{load,encode,denoise,generate}.cpp by stage, and
// flux_pipeline_random.cpp for FluxPipeline::random.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "paradit/models/clip_text.h"
#include "paradit/models/flux_transformer.h"
#include "paradit/models/t5_encoder.h"
#include "paradit/models/vae.h"
#include "paradit/pipeline/flux_pipeline.h"
#include "paradit/sched/scheduler_config.h"
#include "paradit/text/clip_tokenizer.h"
#include "paradit/text/t5_tokenizer.h"
#include "pipeline/flux_sources.h"
#include "pipeline/stream_order_scope.h"

namespace paradit::flux_pipeline {

// How this rank takes part in denoising one image. Null groups: alone (rows then hold the whole image).
struct DenoiseGroups {
  // Sequence and/or tensor parallel: this rank holds `rows` of the joint sequence and the transformer's share
  // of the weights that the groups' other ranks complete.
  const FluxParallel* sp = nullptr;
  FluxShardRows rows;
  Communicator* cfg = nullptr;  // CFG parallel: cfg rank 0 runs the positive branch, cfg rank 1 the negative
  // Patch parallel: the sequence-parallel group (ranks numbered as sp's parts) runs with stale remote K/V.
  Communicator* patch = nullptr;
  // PipeFusion: the stage ring (this rank's stage = pp->rank()), and the sequence-parallel group within a stage
  // (null alone).
  Communicator* pp = nullptr;
  Communicator* stage_sp = nullptr;
  // Every rank that makes this image (tp × SP × CFG): where the loop's transfers switch to stream order.
  Communicator* image = nullptr;
};

class Pipeline final : public FluxPipeline {
 public:
  Pipeline(Backend& backend, ResolvedSources sources, FluxPipelineOptions options);
  // FluxPipeline::random: no tokenizers; the text encoders are made (and remade) from random weights.
  Pipeline(Backend& backend, const FluxNetworkConfigs& configs, uint64_t seed, FluxPipelineOptions options);

  FluxVariant variant() const override { return variant_; }
  const std::string& model_name() const override { return sources_.model_name; }
  double load_seconds() const override { return load_seconds_; }
  size_t transformer_weight_bytes() const override { return transformer_->weight_bytes(); }
  size_t weight_bytes() const override;

  FluxResult generate(const FluxRequest& request, const FluxProgressCallback& progress) override;
  FluxRankResult generate_rank(const FluxRequest& request, const RankContext& ctx,
                               const FluxProgressCallback& progress) override;
  FluxPromptEmbeds encode_prompt(const std::string& prompt, int max_sequence_length,
                                 std::vector<std::string>* warnings) override;
  FluxPromptEmbeds encode_tokens(const std::vector<int32_t>& clip_ids, const std::vector<int32_t>& t5_ids) override;
  Tensor denoise(const Tensor& latents, int64_t width, int64_t height, int steps, float guidance,
                 const FluxPromptEmbeds& positive, const FluxPromptEmbeds* negative, float true_cfg_scale,
                 const FluxProgressCallback& progress) override;
  std::vector<Rgb8Image> decode(const Tensor& latents, int64_t width, int64_t height) override;
  // decode() split by height over `group` (VaeDecoder::decode_to_rgb8_parallel): every rank of the group passes
  // the same latents; the images come back on its rank 0, none elsewhere.
  std::vector<Rgb8Image> decode_parallel(const Tensor& latents, int64_t width, int64_t height, Communicator& group);

 private:
  // With the transformer and the VAE made: checks that the VAE is FLUX's, picks the variant and scheduler, makes
  // the text encoders and logs what was loaded (the end of both constructors).
  void finish_setup(std::chrono::steady_clock::time_point start);
  // Loads (or, in a random pipeline, makes) the text encoders when they are not in memory (first use, or after
  // release_text_encoders) and checks them against the tokenizers and the transformer.
  void ensure_text_encoders();
  void release_text_encoders();
  FluxPromptEmbeds run_text_encoders(FluxPromptEmbeds embeds);
  // The request's prompt (or negative prompt), from its token ids when it has them, else from its text.
  FluxPromptEmbeds encode_request(const FluxRequest& request, bool negative, int max_sequence_length,
                                  std::vector<std::string>* warnings);

  // Checks a request and resolves its defaults into r (steps, max_sequence_length; warnings about ignored
  // options, logged when `report`). Returns whether it runs true CFG.
  bool prepare(const FluxRequest& request, FluxResult& r, bool report) const;
  // Broadcasts a prompt's embeddings (of `tokens` T5 tokens) from world rank `root`, which encoded it, to the
  // other ranks, which allocate them.
  void broadcast_prompt(Communicator& world, int root, int tokens, FluxPromptEmbeds& e);
  // The denoising loop on this rank's rows x of one image: device f32 [1, groups.rows.image_count, 64],
  // updated in place. `progress` gets image 0 of 1.
  void denoise_rows(const Tensor& x, int64_t width, int64_t height, int steps, float guidance,
                    const FluxPromptEmbeds& positive, const FluxPromptEmbeds* negative, float true_cfg_scale,
                    const DenoiseGroups& groups, const FluxProgressCallback& progress);
  // PipeFusion's loop (flux_pipeline_pipefusion.cpp) on the whole image's latents x, device f32 [1, N, 64]: a
  // collective of the stage ring groups.pp; x is final on stage 0 only.
  void denoise_pipefusion(const Tensor& x, int64_t width, int64_t height, int steps, float guidance,
                          const FluxPromptEmbeds& positive, const FluxPromptEmbeds* negative, float true_cfg_scale,
                          const DenoiseGroups& groups, const FluxProgressCallback& progress);

  Backend& backend_;
  ResolvedSources sources_;
  FluxPipelineOptions options_;
  ClipTokenizer clip_tokenizer_;
  T5Tokenizer t5_tokenizer_;
  std::unique_ptr<ClipTextModel> clip_;
  std::unique_ptr<T5Encoder> t5_;
  std::unique_ptr<FluxTransformer> transformer_;
  std::unique_ptr<VaeDecoder> vae_;
  FlowMatchEulerConfig scheduler_config_;
  FluxVariant variant_ = FluxVariant::kDev;
  double load_seconds_ = 0;
  // Set in a random pipeline (no tokenizers; sources_ then only name the pieces for messages).
  std::optional<FluxNetworkConfigs> random_configs_;
  uint64_t random_seed_ = 0;
  // The shapes denoise_rows has run to the end (StreamOrderScope).
  std::set<LoopShape> warm_loop_shapes_;
  // The sizes decode_parallel has decoded (its first decode of a size builds plans synchronously).
  std::set<LoopShape> warm_decode_shapes_;
};

// Throws unless the transformer takes and gives FLUX.1 text-to-image latents (64 channels: 16 packed 2x2).
void check_text_to_image(const FluxConfig& config, const std::string& source);

// FLUX.1's text position ids: host f32 [tokens, 3] of zeros.
Tensor zero_text_ids(int64_t tokens);

// Seconds since `start` on the steady clock.
double seconds_since(const std::chrono::steady_clock::time_point& start);

}  // namespace paradit::flux_pipeline
