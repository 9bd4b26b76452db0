// The FluxPipeline implementation, split over flux_pipeline_{load,encode,denoise,generate}.cpp by stage.
#pragma once

#include <chrono>
#include <memory>
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

namespace paradit::flux_pipeline {

class Pipeline final : public FluxPipeline {
 public:
  Pipeline(Backend& backend, ResolvedSources sources, FluxPipelineOptions options);

  FluxVariant variant() const override { return variant_; }
  const std::string& model_name() const override { return sources_.model_name; }
  double load_seconds() const override { return load_seconds_; }

  FluxResult generate(const FluxRequest& request, const FluxProgressCallback& progress) override;
  FluxPromptEmbeds encode_prompt(const std::string& prompt, int max_sequence_length,
                                 std::vector<std::string>* warnings) override;
  FluxPromptEmbeds encode_tokens(const std::vector<int32_t>& clip_ids, const std::vector<int32_t>& t5_ids) override;
  Tensor denoise(const Tensor& latents, int64_t width, int64_t height, int steps, float guidance,
                 const FluxPromptEmbeds& positive, const FluxPromptEmbeds* negative, float true_cfg_scale,
                 const FluxProgressCallback& progress) override;
  std::vector<Rgb8Image> decode(const Tensor& latents, int64_t width, int64_t height) override;

 private:
  // Loads the text encoders when they are not in memory (first use, or after release_text_encoders) and checks
  // them against the tokenizers and the transformer.
  void ensure_text_encoders();
  void release_text_encoders();
  FluxPromptEmbeds run_text_encoders(FluxPromptEmbeds embeds);

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
};

// Seconds since `start` on the steady clock.
double seconds_since(const std::chrono::steady_clock::time_point& start);

}  // namespace paradit::flux_pipeline
