// FluxPipeline::random: every network of a FLUX.1 pipeline from random weights, for benchmarks of the whole
// pipeline where the real weights are not at hand. The stages after tokenization are the loaded pipeline's.
#include "paradit/core/status.h"
#include "pipeline/flux_pipeline_impl.h"

namespace paradit {
namespace flux_pipeline {

Pipeline::Pipeline(Backend& backend, const FluxNetworkConfigs& configs, uint64_t seed, FluxPipelineOptions options)
    : backend_(backend), options_(options), random_configs_(configs), random_seed_(seed) {
  const auto start = std::chrono::steady_clock::now();
  sources_.model_name = "FLUX.1 with random weights";
  // Nothing is read from these: they name the pieces in messages.
  sources_.transformer = "(random transformer)";
  sources_.vae = "(random VAE)";
  sources_.clip = "(random CLIP)";
  sources_.t5 = "(random T5)";

  check_text_to_image(configs.transformer, sources_.transformer);
  transformer_ = FluxTransformer::random(backend_, configs.transformer, seed, options_.tensor_parallel,
                                         options_.stale.blocks);
  vae_ = VaeDecoder::random(backend_, configs.vae, seed + 3);
  finish_setup(start);
}

}  // namespace flux_pipeline

FluxNetworkConfigs FluxNetworkConfigs::tiny() {
  FluxNetworkConfigs c;
  c.transformer.num_layers = 2;
  c.transformer.num_single_layers = 2;
  c.transformer.attention_head_dim = 16;
  c.transformer.num_attention_heads = 3;
  c.transformer.joint_attention_dim = 32;
  c.transformer.pooled_projection_dim = 32;
  c.transformer.axes_dims_rope = {4, 6, 6};
  c.clip.hidden_size = 32;
  c.clip.intermediate_size = 64;
  c.clip.num_hidden_layers = 2;
  c.clip.num_attention_heads = 4;
  c.t5.d_model = 32;
  c.t5.d_kv = 8;
  c.t5.num_heads = 4;
  c.t5.d_ff = 48;
  c.t5.num_layers = 2;
  c.vae.block_out_channels = {8, 16, 16, 16};
  c.vae.layers_per_block = 1;
  c.vae.norm_num_groups = 4;
  return c;
}

std::unique_ptr<FluxPipeline> FluxPipeline::random(Backend& backend, const FluxNetworkConfigs& configs, uint64_t seed,
                                                   const FluxPipelineOptions& options) {
  return std::make_unique<flux_pipeline::Pipeline>(backend, configs, seed, options);
}

}  // namespace paradit
