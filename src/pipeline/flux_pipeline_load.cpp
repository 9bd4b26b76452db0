// Loading a FLUX.1 pipeline: every component, then the checks that they fit together.
#include <filesystem>

#include "paradit/core/log.h"
#include "paradit/core/status.h"
#include "paradit/io/flux_checkpoint.h"
#include "paradit/pipeline/latents.h"
#include "pipeline/flux_pipeline_impl.h"

namespace paradit {
namespace flux_pipeline {
namespace {

// diffusers' FluxPipeline reads CLIP through transformers; transformers 5 (current) runs CLIPTokenizer on the
// tokenizers library's pipeline. Plain prompts give the same ids under either rule set.
constexpr ClipTextRules kClipRules = ClipTextRules::kTokenizersLibrary;

T5Tokenizer load_t5_tokenizer(const std::string& path) {
  if (std::filesystem::is_directory(path)) return T5Tokenizer::load(path);
  if (std::filesystem::path(path).extension() == ".json") return T5Tokenizer::from_tokenizer_json(path);
  return T5Tokenizer::from_sentencepiece(path);
}

int64_t mib(size_t bytes) { return int64_t(bytes >> 20); }

}  // namespace

double seconds_since(const std::chrono::steady_clock::time_point& start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void check_text_to_image(const FluxConfig& fc, const std::string& source) {
  // Fill/Depth and other conditioned variants take more input channels; FluxCheckpoint already refuses those
  // it recognises, this catches the rest before a shape error deep in the first step.
  if (fc.in_channels != kFluxLatentChannels * 4 || fc.out_channels != kFluxLatentChannels * 4)
    PD_THROW(kUnimplemented, "transformer ", source, " has ", fc.in_channels, " input and ", fc.out_channels,
             " output channels; FLUX.1 text-to-image needs 64 (16 latent channels packed 2x2)");
}

Pipeline::Pipeline(Backend& backend, ResolvedSources sources, FluxPipelineOptions options)
    : backend_(backend), sources_(std::move(sources)), options_(options) {
  const auto start = std::chrono::steady_clock::now();
  clip_tokenizer_ = ClipTokenizer::load(sources_.clip_tokenizer, kClipRules);
  t5_tokenizer_ = load_t5_tokenizer(sources_.t5_tokenizer);

  const FluxCheckpoint checkpoint = FluxCheckpoint::open(sources_.transformer, sources_.transformer_config);
  check_text_to_image(checkpoint.config(), checkpoint.source());
  transformer_ = FluxTransformer::load(backend_, checkpoint, options_.tensor_parallel, options_.stale.blocks);
  vae_ = VaeDecoder::load(backend_, sources_.vae, sources_.vae_config);
  finish_setup(start);
}

void Pipeline::finish_setup(std::chrono::steady_clock::time_point start) {
  const FluxConfig& fc = transformer_->config();
  variant_ = fc.guidance_embeds ? FluxVariant::kDev : FluxVariant::kSchnell;
  if (vae_->config().latent_channels != kFluxLatentChannels || vae_->config().scale_factor() != kFluxVaeScale)
    PD_THROW(kInvalidArgument, "VAE ", sources_.vae, " (", vae_->config().summary(),
             ") is not a FLUX.1 VAE: FLUX.1 needs 16 latent channels and 8x downsampling");

  scheduler_config_ = sources_.scheduler_config.empty()
                          ? (variant_ == FluxVariant::kDev ? FlowMatchEulerConfig::flux_dev()
                                                           : FlowMatchEulerConfig::flux_schnell())
                          : FlowMatchEulerConfig::load(sources_.scheduler_config);
  // A parallel rank that never encodes prompts leaves the text encoders on disk (options_.encodes_prompts).
  if (options_.encodes_prompts) ensure_text_encoders();
  load_seconds_ = seconds_since(start);

  const std::string encoders = options_.encodes_prompts
                                   ? t5_->config().summary() + "; " + clip_->config().summary()
                                   : std::string("text encoders not loaded (another rank encodes the prompts)");
  const std::string message = detail::concat(
      "loaded ", sources_.model_name, " (FLUX.1-", variant_ == FluxVariant::kDev ? "dev" : "schnell", ") on ",
      backend_.name(), " in ", int(load_seconds_ * 1000), " ms: transformer ", fc.summary(), " (",
      mib(transformer_->weight_bytes()), " MiB",
      options_.tensor_parallel.size > 1 ? detail::concat(", tensor-parallel share ", options_.tensor_parallel.rank,
                                                          " of ", options_.tensor_parallel.size)
                                        : std::string(),
      "); ", encoders, "; VAE ", vae_->config().summary(), "; scheduler ",
      scheduler_config_.summary());
  if (options_.encodes_prompts) {
    PD_LOG(kInfo, message);
  } else {
    PD_LOG(kDebug, message);  // one line per device would repeat rank 0's
  }
}

size_t Pipeline::weight_bytes() const {
  return transformer_->weight_bytes() + vae_->weight_bytes() + (clip_ ? clip_->weight_bytes() : 0) +
         (t5_ ? t5_->weight_bytes() : 0);
}

void Pipeline::ensure_text_encoders() {
  if (random_configs_) {
    if (!clip_) clip_ = ClipTextModel::random(backend_, random_configs_->clip, random_seed_ + 1);
    if (!t5_) t5_ = T5Encoder::random(backend_, random_configs_->t5, random_seed_ + 2);
  } else {
    if (!clip_) clip_ = ClipTextModel::load(backend_, sources_.clip, sources_.clip_config);
    if (!t5_) t5_ = T5Encoder::load(backend_, sources_.t5, sources_.t5_config);
  }
  const FluxConfig& fc = transformer_->config();
  const ClipTextConfig& cc = clip_->config();
  const T5Config& tc = t5_->config();
  PD_REQUIRE(cc.hidden_size == fc.pooled_projection_dim, "CLIP text encoder ", sources_.clip, " has hidden size ",
             cc.hidden_size, " but transformer ", sources_.transformer, " takes pooled projections of ",
             fc.pooled_projection_dim, ": the files belong to different models");
  PD_REQUIRE(tc.d_model == fc.joint_attention_dim, "T5 encoder ", sources_.t5, " has d_model ", tc.d_model,
             " but transformer ", sources_.transformer, " takes text states of width ", fc.joint_attention_dim,
             ": the files belong to different models");
  PD_REQUIRE(cc.max_position_embeddings >= ClipTokenizer::kFluxMaxLength, "CLIP text encoder ", sources_.clip,
             " has ", cc.max_position_embeddings, " positions; FLUX.1 feeds it ", ClipTokenizer::kFluxMaxLength,
             " tokens");
  if (random_configs_) return;  // no tokenizers to check
  PD_REQUIRE(clip_tokenizer_.vocab_size() <= size_t(cc.vocab_size), "CLIP tokenizer ", sources_.clip_tokenizer,
             " has ", clip_tokenizer_.vocab_size(), " tokens but the CLIP text encoder only ", cc.vocab_size,
             ": they belong to different models");
  PD_REQUIRE(t5_tokenizer_.vocab_size() <= size_t(tc.vocab_size), "T5 tokenizer ", sources_.t5_tokenizer, " has ",
             t5_tokenizer_.vocab_size(), " tokens but the T5 encoder only ", tc.vocab_size,
             ": they belong to different models");
}

void Pipeline::release_text_encoders() {
  clip_.reset();
  t5_.reset();
}

}  // namespace flux_pipeline

std::unique_ptr<FluxPipeline> FluxPipeline::load(Backend& backend, const FluxPipelineSources& sources,
                                                 const FluxPipelineOptions& options) {
  // Said once per engine: by the rank that encodes the prompts.
  if (sources.embedded && options.encodes_prompts)
    PD_LOG(kWarn, "using the embedded tiny-flux pipeline at ", sources.model_dir,
           ": its weights are random, so its images are noise (pass --model DIR or single files for FLUX.1)");
  return std::make_unique<flux_pipeline::Pipeline>(backend, flux_pipeline::resolve_sources(sources), options);
}

}  // namespace paradit
