// FluxPipeline: FLUX.1 text-to-image on one Backend, computing what diffusers' FluxPipeline computes.
//
// prompt → CLIP BPE + T5 SentencePiece tokens → CLIPTextModel (pooled) + T5EncoderModel (sequence) → from seeded
// noise, `steps` FlowMatchEuler steps of the FLUX transformer (true CFG when a negative prompt and a scale > 1 are
// given) → unpack → VAE decode → 8-bit RGB. The stages are public so that tests can check each against diffusers.
//
// Latents live on the device in f32 ([1, N, 64] packed, one image at a time) whatever the compute dtype; the
// transformer gets a copy in compute dtype, and the Euler step x += dt·v runs in f32 (Backend::axpby). Noise is
// drawn on the host (pipeline/latents.h), so a seed gives the same image on every backend and device count.
// Batches follow stable-diffusion.cpp's --batch-count: image i is generated alone with seed + i, so any image of
// a batch can be reproduced by itself.
//
// generate_rank is the same pipeline run by every rank of a device mesh at once (runtime/engine.h starts them):
// the joint token sequence is cut over the sequence-parallel ranks after the input embedding and the latents
// stay cut through the loop (the Euler step is elementwise), CFG-parallel ranks run one branch each, data-parallel
// ranks take a share of the batch, and each image's latents are gathered once, for decoding.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "paradit/backend/backend.h"
#include "paradit/io/flux_checkpoint.h"
#include "paradit/models/clip_text.h"
#include "paradit/models/flux_transformer.h"
#include "paradit/models/t5_encoder.h"
#include "paradit/models/vae.h"
#include "paradit/parallel/rank_context.h"
#include "paradit/text/tokenized_prompt.h"

namespace paradit {

// Where each piece of a FLUX.1 pipeline comes from: a diffusers FluxPipeline folder, single files as
// stable-diffusion.cpp users have them, or both (a single file replaces that piece of the folder).
struct FluxPipelineSources {
  std::string model_dir;        // a diffusers FluxPipeline folder (model_index.json)
  std::string diffusion_model;  // the transformer: BFL/ComfyUI flux1-dev.safetensors (or a diffusers folder)
  std::string vae;              // ae.safetensors (LDM names) or a diffusers vae folder
  std::string clip_l;           // ComfyUI clip_l.safetensors or a transformers folder
  std::string t5xxl;            // ComfyUI t5xxl_fp16.safetensors or a transformers folder
  std::string clip_tokenizer;   // a folder with vocab.json and merges.txt (FLUX.1's tokenizer/)
  std::string t5_tokenizer;     // spiece.model, tokenizer.json, or a folder with them (FLUX.1's tokenizer_2/)
  // A diffusers FluxPipeline folder whose <component>/config.json files describe the single files. Needed only
  // for networks of unpublished sizes (tests' tiny models); FLUX.1's configs are inferred from tensor shapes.
  std::string config_dir;

  // The small random pipeline shipped in the repository (models/tiny-flux), looked for next to the executable
  // (./models, ../models, ../share/paradit/models) and then in the source tree this library was built from.
  // Throws kNotFound naming the places searched.
  static FluxPipelineSources embedded_default();
  bool embedded = false;  // set by embedded_default(): messages then say the weights are random
  // True when no piece is given (the front end then uses embedded_default()).
  bool empty() const;
};

enum class FluxVariant { kDev, kSchnell };  // from the transformer: guidance embedding ⇒ dev

// The transformer's config as the sources give it, read without loading any weight (a mesh is planned from the
// head count before the ranks load). Throws as FluxPipeline::load would for missing or malformed pieces.
FluxConfig flux_transformer_config(const FluxPipelineSources& sources);

// The networks of a pipeline made by FluxPipeline::random; the defaults are FLUX.1-dev's (CLIP-L, T5-v1.1-XXL,
// the FLUX.1-dev transformer, the FLUX VAE).
struct FluxNetworkConfigs {
  FluxConfig transformer = FluxConfig::dev();
  ClipTextConfig clip = ClipTextConfig::clip_l();
  T5Config t5 = T5Config::v1_1_xxl();
  VaeConfig vae = VaeConfig::flux();

  // models/tiny-flux's widths and depths with the real vocabularies (so that real token ids fit): every stage of
  // a random pipeline of these runs in seconds on a CPU (smoke tests, `bench pipeline --tiny`).
  static FluxNetworkConfigs tiny();
};

// The methods that keep K/V across steps (PipeFusion over the mesh's pp dimension, patch parallel over its
// sequence-parallel group): approximate unless every step is a warm-up step. runtime/engine.h fills these in for
// every rank.
struct FluxStaleOptions {
  FluxBlockRange blocks;        // the transformer blocks this rank holds (its PipeFusion stage); default all
  int patches = 0;              // PipeFusion: image bands (uneven allowed, at most the image's tokens); 0: pp degree
  int warmup_steps = 1;         // the first steps run synchronously over the whole sequence: exact
  bool patch_parallel = false;  // the sequence-parallel group runs patch parallel (stale remote K/V), not USP
};

struct FluxPipelineOptions {
  // Frees the text encoders' weights once a request's prompts are encoded (reloaded when the next one needs
  // them): FLUX.1's T5-XXL is 9.5 GB in bf16, memory the transformer can use.
  bool release_text_encoders = false;
  // Decode large images tile by tile (diffusers' enable_tiling()).
  bool vae_tiling = false;
  // False for the ranks of a parallel engine that never encode prompts (generate_rank: the rank
  // flux_prompt_encoder_rank names encodes and broadcasts the embeddings): their text encoders are loaded only if they are ever asked to encode, which
  // saves FLUX.1's 10 GB of T5-XXL and CLIP on every other device, and their load is logged at debug level.
  bool encodes_prompts = true;
  // The share of the transformer's weights this rank loads (tensor parallelism: the engine sets the rank's tp
  // coordinate and degree); generate_rank then passes the mesh's tp group to it.
  FluxTensorShard tensor_parallel;
  // The methods that keep K/V across steps (the engine sets the blocks of the rank's PipeFusion stage).
  FluxStaleOptions stale;
  // Ulysses: its all-to-alls pipelined over this many chunks of each rank's heads, so that one chunk's attention
  // runs while the next arrives (usp_attention). The same on every rank.
  int ulysses_head_chunks = 1;
  // Ring: how the key/value blocks reach the ranks (RingKv: passed around the ring, or gathered from every rank
  // at once). The same on every rank.
  RingKv ring_kv = RingKv::kPass;
  // Time the regions of each request on the device (Backend::mark_region: GEMMs, attention, norms, ...; on a
  // GPU from events, so the host does not wait) into FluxTimings::regions — `bench pipeline --profile`.
  bool time_regions = false;
};

// One generation request (FluxPipeline.__call__'s arguments that matter here).
// A prompt as token ids: what CLIPTokenizer (FLUX.1: 77 ids) and the T5 tokenizer (max_sequence_length ids) give.
struct FluxPromptTokens {
  std::vector<int32_t> clip, t5;
};

struct FluxRequest {
  std::string prompt;
  std::optional<std::string> negative_prompt;  // true CFG when given and true_cfg_scale > 1 (diffusers' rule)
  // Token ids in place of the text (then prompt / negative_prompt are not read). A pipeline without tokenizers
  // (FluxPipeline::random: benchmarks) takes only these. The T5 ids set the sequence length: max_sequence_length
  // must be 0 or their count, and a negative prompt's T5 ids must be as many.
  std::optional<FluxPromptTokens> prompt_tokens, negative_prompt_tokens;
  float true_cfg_scale = 1.0f;                 // v = v_neg + s·(v_pos − v_neg)
  float guidance = 3.5f;                       // the distilled guidance of dev models; schnell has none
  int steps = 0;                               // 0: the variant's default (28 dev, 4 schnell)
  int64_t width = 1024, height = 1024;         // pixels, multiples of 16
  uint64_t seed = 42;                          // image i of the batch uses seed + i
  int batch_count = 1;
  int max_sequence_length = 0;  // T5 tokens, 1..512; 0: the variant's default (512 dev, 256 schnell)
  // Replaces the seeded noise: host f32 packed [batch_count, (H/16)·(W/16), 64] (see load_init_latents).
  Tensor init_latents;
};

// Whether a request runs true CFG: a negative prompt (text or tokens) and a CFG scale above 1 (diffusers' rule).
bool uses_true_cfg(const FluxRequest& request);

struct FluxProgress {
  int image = 0, images = 1;  // 0-based image of the batch
  int step = 0, steps = 0;    // steps done (1..steps)
  double step_seconds = 0;    // the last step's wall time
};
using FluxProgressCallback = std::function<void(const FluxProgress&)>;

struct FluxTimings {
  double encode_s = 0, denoise_s = 0, decode_s = 0;
  std::vector<double> step_s;  // every denoising step of every image, in order
  // With FluxPipelineOptions::time_regions: rank 0's device time per region over the request.
  std::vector<RegionTime> regions;
};

struct FluxResult {
  std::vector<Rgb8Image> images;
  std::vector<uint64_t> seeds;  // per image
  Tensor latents;               // host f32 packed [batch_count, N, 64] after the last step
  int steps = 0, max_sequence_length = 0;  // the values used (defaults resolved)
  FluxTimings timings;
  std::vector<std::string> warnings;  // also logged: truncated prompts, ignored options
};

// One rank's share of a parallel generate: the images it decoded — one rank per image, the first of the
// sequence-parallel and CFG groups of the data-parallel rank that denoised it — with their seeds, final latents
// (host f32 [k, N, 64]) and step times (`steps` per image, in order), plus this rank's stage times. World rank 0
// also returns the warnings. runtime/engine.h merges the shares into one FluxResult.
struct FluxRankResult {
  FluxResult result;
  std::vector<int> batch_indices;  // the request's index of each of result.images, increasing
};

// A prompt as the transformer sees it.
struct FluxPromptEmbeds {
  TokenizedPrompt clip_tokens, t5_tokens;
  Tensor prompt_embeds;  // T5 last_hidden_state [1, T, joint_attention_dim], compute dtype, on the device
  Tensor pooled;         // CLIP pooler_output [1, pooled_projection_dim]
};

// Throws kInvalidArgument unless width and height are positive multiples of 16 (FluxPipeline would silently
// floor them: the image would not have the size asked for).
void check_flux_image_size(int64_t width, int64_t height);

class FluxPipeline {
 public:
  // Resolves the sources (every missing piece named in one error), loads and cross-checks every component on
  // `backend`, which must outlive the pipeline.
  static std::unique_ptr<FluxPipeline> load(Backend& backend, const FluxPipelineSources& sources,
                                            const FluxPipelineOptions& options = {});
  // Every network from random weights (each model's ::random; seed, seed + 1, ... per network) for benchmarks:
  // the real shapes, memory and arithmetic, images of noise. There are no tokenizers: encode_prompt, and requests
  // with prompts as text, throw kInvalidArgument; requests with token ids (FluxRequest::prompt_tokens),
  // encode_tokens, denoise and decode run as in a loaded pipeline. Throws as load does when the configs do not fit
  // together.
  static std::unique_ptr<FluxPipeline> random(Backend& backend, const FluxNetworkConfigs& configs, uint64_t seed,
                                              const FluxPipelineOptions& options = {});
  virtual ~FluxPipeline() = default;

  virtual FluxVariant variant() const = 0;
  int default_steps() const { return variant() == FluxVariant::kDev ? 28 : 4; }
  int default_max_sequence_length() const { return variant() == FluxVariant::kDev ? 512 : 256; }
  // "tiny-flux", "FLUX.1-dev", the diffusion model's file name: for messages and PNG metadata.
  virtual const std::string& model_name() const = 0;
  virtual double load_seconds() const = 0;
  // Bytes of the transformer's weights on this pipeline's device (this rank's share under tensor parallelism),
  // and of every network's weights held there now (text encoders only while loaded).
  virtual size_t transformer_weight_bytes() const = 0;
  virtual size_t weight_bytes() const = 0;

  virtual FluxResult generate(const FluxRequest& request, const FluxProgressCallback& progress = {}) = 0;
  // This rank's part of generate() over ctx's mesh: a collective of every rank of ctx.world, each passing the
  // same request (and its own pipeline, loaded from the same sources). flux_prompt_encoder_rank(ctx.mesh)
  // encodes the prompts (only its pipeline needs text encoders: FluxPipelineOptions::encodes_prompts) and
  // broadcasts the embeddings; every rank draws each of its images' noise on the host, as generate() does, and
  // keeps its rows. The images equal generate()'s up to fp32 rounding (DESIGN.md: 1e-5 relative). A CFG-parallel
  // mesh needs a true-CFG request. `progress` gets the steps of the images this rank decodes.
  virtual FluxRankResult generate_rank(const FluxRequest& request, const RankContext& ctx,
                                       const FluxProgressCallback& progress = {}) = 0;

  // --- Stages (generate() is these in order) ---
  // Tokenizes (CLIP 77 tokens, T5 max_sequence_length; a longer prompt is truncated with a warning appended to
  // *warnings and logged) and encodes.
  virtual FluxPromptEmbeds encode_prompt(const std::string& prompt, int max_sequence_length,
                                         std::vector<std::string>* warnings) = 0;
  // Encodes given token ids: CLIP's (77) and T5's (any length 1..512).
  virtual FluxPromptEmbeds encode_tokens(const std::vector<int32_t>& clip_ids, const std::vector<int32_t>& t5_ids) = 0;
  // Denoises one image from host f32 packed latents [1, N, 64] of a width×height image; negative is used when
  // defined and true_cfg_scale > 1. Returns the final latents, host f32 [1, N, 64]. `progress` gets image 0.
  virtual Tensor denoise(const Tensor& latents, int64_t width, int64_t height, int steps, float guidance,
                         const FluxPromptEmbeds& positive, const FluxPromptEmbeds* negative, float true_cfg_scale,
                         const FluxProgressCallback& progress = {}) = 0;
  // Host f32 packed latents [B, N, 64] → B images of width×height.
  virtual std::vector<Rgb8Image> decode(const Tensor& latents, int64_t width, int64_t height) = 0;
};

// The world rank that runs the text encoders for a mesh: rank 0, or under PipeFusion the first rank of the last
// stage. FLUX's double-stream blocks (two sets of weights each, the compute of one) come first, so a stage split
// by compute leaves the last stage the fewest weights: T5-XXL's 9.5 GB sit best beside them, and stage 0 keeps
// the VAE.
int flux_prompt_encoder_rank(const DeviceMesh& mesh);

}  // namespace paradit
