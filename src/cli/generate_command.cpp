// `paradit generate`: FLUX.1 text-to-image into PNG files, with stable-diffusion.cpp's flag names, on one device
// or split over several (--tp, --ulysses, --ring, --cfg-parallel, --dp, --gpus: runtime/engine.h).
#include <chrono>
#include <cstdio>
#include <random>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/generate_report.h"
#include "cli/progress_bar.h"
#include "cli/sp_flags.h"
#include "cli/stale_flags.h"
#include "paradit/comm/mpi.h"
#include "paradit/core/log.h"
#include "paradit/io/png.h"
#include "paradit/pipeline/flux_pipeline.h"
#include "paradit/pipeline/latents.h"
#include "paradit/runtime/engine.h"
#include "paradit/runtime/mesh_plan.h"

namespace paradit::cli {
namespace {

struct GenerateArgs {
  std::string prompt, negative_prompt, output = "output.png", init_latents, seed = "42";
  std::string device = "auto", dtype = "auto";
  FluxPipelineSources sources;
  float cfg_scale = 1.0f, guidance = 3.5f;
  int steps = 0, width = 1024, height = 1024, batch_count = 1, max_sequence_length = 0;
  bool vae_tiling = false, release_text_encoders = false, quiet = false, json = false;
  SpTuningArgs sp;
  MeshRequest mesh;
  StaleArgs stale;
  int threads_per_rank = 0;
};

void add_options(ArgParser& p, GenerateArgs& a) {
  p.option("prompt", "p", &a.prompt, "the prompt (required)");
  p.option("negative-prompt", "n", &a.negative_prompt, "negative prompt, used when --cfg-scale > 1");
  p.option("cfg-scale", "", &a.cfg_scale, "true CFG scale: v = v_neg + s*(v_pos - v_neg) when > 1 (2 passes/step)");
  p.option("guidance", "", &a.guidance, "distilled guidance of FLUX.1-dev (schnell has none)");
  p.option("steps", "", &a.steps, "denoising steps; 0: 28 for dev, 4 for schnell");
  p.option("seed", "s", &a.seed, "noise seed; image i of a batch uses seed+i; negative: random");
  p.option("width", "W", &a.width, "image width, a multiple of 16");
  p.option("height", "H", &a.height, "image height, a multiple of 16");
  p.option("batch-count", "b", &a.batch_count, "images to make (numbered files)");
  p.option("max-sequence-length", "", &a.max_sequence_length, "T5 tokens, up to 512; 0: 512 dev, 256 schnell");
  p.option("output", "o", &a.output, "PNG file; with several images, NAME_1.png ...");
  p.option("init-latents", "", &a.init_latents, "safetensors file with tensor 'latents' replacing the noise");
  p.option("model", "", &a.sources.model_dir, "diffusers FLUX.1 folder (model_index.json)");
  p.option("diffusion-model", "", &a.sources.diffusion_model, "transformer single file (flux1-dev.safetensors)");
  p.option("vae", "", &a.sources.vae, "VAE single file (ae.safetensors)");
  p.option("clip_l", "", &a.sources.clip_l, "CLIP-L single file (clip_l.safetensors)");
  p.option("t5xxl", "", &a.sources.t5xxl, "T5-XXL single file (t5xxl_fp16.safetensors)");
  p.option("clip-tokenizer", "", &a.sources.clip_tokenizer, "folder with CLIP's vocab.json and merges.txt");
  p.option("t5-tokenizer", "", &a.sources.t5_tokenizer, "T5's spiece.model or tokenizer.json");
  p.option("config-dir", "", &a.sources.config_dir,
           "diffusers FLUX.1 folder whose config.json files describe the single files (unpublished sizes only)");
  p.option("device", "", &a.device, "cpu, cuda, cuda:N or auto; several ranks: cpu (CPU ranks), cuda or auto");
  p.option("dtype", "", &a.dtype, "compute dtype: auto, or the device's own (f32 on cpu, bf16 on cuda)");
  p.option("tp", "", &a.mesh.tp,
           "tensor-parallel degree: each rank holds 1/N of the transformer's heads and MLP (a model too big for one "
           "GPU)");
  p.option("ulysses", "", &a.mesh.ulysses, "Ulysses degree (sequence parallel, all-to-all of heads); 0: not set");
  p.option("ring", "", &a.mesh.ring, "Ring degree (sequence parallel, K/V passed round the ranks); 0: not set");
  add_sp_tuning_options(p, a.sp);
  p.flag("cfg-parallel", "", &a.mesh.cfg_parallel, "true CFG's two prompts side by side on two halves of the ranks");
  p.option("dp", "", &a.mesh.dp, "data-parallel degree: the batch's images split over this many groups of ranks");
  p.option("gpus", "", &a.mesh.ranks,
           "ranks (GPUs, or CPU ranks with --device cpu): alone it picks the mesh, with degrees their product");
  add_stale_options(p, a.stale);
  p.option("threads-per-rank", "", &a.threads_per_rank, "threads of each CPU rank; 0: the cores shared evenly");
  p.flag("vae-tiling", "", &a.vae_tiling, "decode large images tile by tile");
  p.flag("release-text-encoders", "", &a.release_text_encoders, "free the text encoders after encoding");
  p.flag("quiet", "q", &a.quiet, "no progress bar, no messages except warnings and errors");
  p.flag("json", "", &a.json, "print a JSON summary (timings per stage, seeds, outputs) on stdout");
}

uint64_t parse_seed(const std::string& text) {
  size_t used = 0;
  long long v = 0;
  try {
    v = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  PD_REQUIRE(!text.empty() && used == text.size(), "option --seed expects an integer, got '", text, "'");
  if (v >= 0) return uint64_t(v);
  std::random_device rd;
  return (uint64_t(rd()) << 32 | rd()) >> 1;  // 63 bits: prints and re-enters as a non-negative --seed
}

// Checks what can be checked before minutes of model loading.
void validate(const GenerateArgs& a) {
  PD_REQUIRE(!a.prompt.empty(), "generate needs a prompt: -p \"...\"");
  check_flux_image_size(a.width, a.height);
  PD_REQUIRE(a.batch_count >= 1, "--batch-count must be at least 1, got ", a.batch_count);
  PD_REQUIRE(a.steps >= 0, "--steps must be at least 1 (0 for the model's default), got ", a.steps);
  PD_REQUIRE(a.max_sequence_length >= 0 && a.max_sequence_length <= 512,
             "--max-sequence-length must be in 1..512 (0 for the model's default), got ", a.max_sequence_length);
  PD_REQUIRE(a.dtype == "auto" || a.dtype == "f32" || a.dtype == "bf16", "--dtype must be auto, f32 or bf16, got '",
             a.dtype, "'");
  PD_REQUIRE(!a.output.empty(), "--output must name a file");
  PD_REQUIRE(a.mesh.tp >= 1 && a.mesh.ulysses >= 0 && a.mesh.ring >= 0 && a.mesh.dp >= 1 && a.mesh.ranks >= 0,
             "--tp, --ulysses, --ring, --dp and --gpus must be positive");
  PD_REQUIRE(a.threads_per_rank >= 0, "--threads-per-rank must be >= 0 (0: the cores shared evenly), got ",
             a.threads_per_rank);
}

}  // namespace

int generate_command(int argc, char** argv, int first) {
  const auto start = std::chrono::steady_clock::now();
  GenerateArgs a;
  ArgParser parser("generate", "Makes images from a prompt with FLUX.1 (diffusers folder or single files; without "
                               "either, the embedded tiny random pipeline).");
  add_options(parser, a);
  if (!parser.parse(argc, argv, first)) {
    std::printf("%s", parser.usage().c_str());
    return 0;
  }
  validate(a);
  // Started by MPI: world rank 0 alone reports (and writes the images); the others only warn.
  const bool follower = mpi_launch_size() > 1 && mpi_available() && mpi_process().rank != 0;
  if (a.quiet || follower) set_log_level(LogLevel::kWarn);

  FluxRequest req;
  req.prompt = a.prompt;
  // stable-diffusion.cpp's rule: a CFG scale above 1 means true CFG, against the empty prompt when no -n is given.
  if (a.cfg_scale > 1.0f || !a.negative_prompt.empty()) req.negative_prompt = a.negative_prompt;
  req.true_cfg_scale = a.cfg_scale;
  req.guidance = a.guidance;
  req.steps = a.steps;
  req.width = a.width;
  req.height = a.height;
  req.seed = parse_seed(a.seed);
  req.batch_count = a.batch_count;
  req.max_sequence_length = a.max_sequence_length;
  if (!a.init_latents.empty()) req.init_latents = load_init_latents(a.init_latents, a.batch_count, a.height, a.width);

  EngineOptions options;
  options.device = a.device;
  options.threads_per_rank = a.threads_per_rank;
  options.sources = a.sources.empty() ? FluxPipelineSources::embedded_default() : a.sources;
  options.pipeline.vae_tiling = a.vae_tiling;
  apply_sp_tuning_args(a.sp, options);
  options.pipeline.release_text_encoders = a.release_text_encoders;
  apply_stale_args(a.stale, a.mesh, options);
  // Only a rank count alone needs the model's head count (auto_mesh): read from the transformer's config.
  const bool auto_sp = a.mesh.ranks > 0 && a.mesh.ulysses == 0 && a.mesh.ring == 0;
  const int heads = auto_sp ? flux_transformer_config(options.sources).num_attention_heads : 1;
  options.mesh = plan_mesh(a.mesh, heads, uses_true_cfg(req)).degrees();
  require_cfg_parallel_fits(options.mesh, uses_true_cfg(req));  // before minutes of loading
  auto engine = Engine::create(options);
  const char* compute = dtype_name(engine->compute_dtype());
  if (a.dtype != "auto" && a.dtype != compute)
    PD_THROW(kUnimplemented, "--dtype ", a.dtype, ": the ", engine->device_name(), " backend computes in ", compute,
             " only (omit --dtype or pick another --device)");

  ProgressBar bar(!a.quiet && engine->leads());
  const FluxResult result = engine->generate(req, [&](const FluxProgress& p) { bar.update(p); });
  bar.finish();
  if (!engine->leads()) return 0;

  GenerateReport report;
  report.model = engine->model_name();
  report.variant = engine->variant() == FluxVariant::kDev ? "dev" : "schnell";
  report.device = engine->device_name();
  report.dtype = compute;
  report.request = req;
  if (!uses_true_cfg(req)) report.request.negative_prompt.reset();
  report.init_latents = a.init_latents;
  report.result = &result;
  report.outputs = numbered_outputs(a.output, a.batch_count);
  report.load_s = engine->load_seconds();
  report.approximate = approximation_note(a.stale, result.steps);
  if (!report.approximate.empty() && !a.quiet && !a.json) std::fprintf(stderr, "note: %s\n", report.approximate.c_str());
  report.memory = engine->memory();

  const auto write_start = std::chrono::steady_clock::now();
  for (size_t i = 0; i < result.images.size(); ++i) {
    const Rgb8Image& img = result.images[i];
    write_png(report.outputs[i], img.pixels, img.width, img.height,
              {{kPngParametersKey, png_parameters(report, int(i))}});
  }
  report.write_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - write_start).count();
  report.total_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  if (a.json) {
    std::printf("%s\n", json_summary(report).c_str());
  } else if (!a.quiet) {
    for (size_t i = 0; i < report.outputs.size(); ++i)
      std::printf("wrote %s (%lldx%lld, seed %llu)\n", report.outputs[i].c_str(), (long long)req.width,
                  (long long)req.height, (unsigned long long)result.seeds[i]);
    std::printf("load %.2f s, encode %.2f s, denoise %.2f s (%d steps x %d image(s)), decode %.2f s, total %.2f s\n",
                report.load_s, result.timings.encode_s, result.timings.denoise_s, result.steps, a.batch_count,
                result.timings.decode_s, report.total_s);
  }
  return 0;
}

}  // namespace paradit::cli
