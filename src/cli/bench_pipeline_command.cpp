// `paradit bench pipeline`: the whole FLUX.1-dev text-to-image pipeline on one device with random weights of the
// real shapes (T5-XXL, CLIP-L, transformer, VAE): encode, `steps` denoising steps, decode to 8-bit RGB, each stage
// timed (median over runs after a warm-up), with peak device memory. The peer is
// bench/peers/diffusers_flux_pipeline.py, which feeds diffusers' FluxPipeline the same token ids.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "cli/args.h"
#include "cli/commands.h"
#include "paradit/backend/backend.h"
#include "paradit/core/allocator.h"
#include "paradit/core/status.h"
#include "paradit/pipeline/flux_pipeline.h"
#include "paradit/pipeline/latents.h"

namespace paradit::cli {
namespace {

constexpr uint64_t kWeightSeed = 42, kNoiseSeed = 0;
constexpr float kGuidance = 3.5f;  // FluxPipeline's default

// A short prompt as CLIP-L's and T5's tokenizers pad it for FLUX.1-dev (77 and 512 ids). There are no tokenizers
// for random weights; the encoders' cost does not depend on the values, and the peer uses these same ids.
std::vector<int32_t> clip_ids() {
  std::vector<int32_t> ids = {49406, 320, 1125, 539, 320, 2368, 4919, 530, 518, 1573, 49407};  // BOS ... EOS
  ids.resize(77, 49407);  // padded with EOS
  return ids;
}
std::vector<int32_t> t5_ids() {
  std::vector<int32_t> ids = {3, 9, 1202, 13, 3, 9, 1712, 3823, 16, 8, 2015, 1};  // ... EOS
  ids.resize(512, 0);  // padded with <pad>
  return ids;
}

// models/tiny-flux's widths and depths with the real vocabularies (so that the ids above fit): every stage runs in
// seconds on a CPU.
FluxNetworkConfigs tiny_configs() {
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

struct RunTimes {
  double encode_s = 0, denoise_s = 0, decode_s = 0, total_s = 0;
};

double since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// One prompt → image run through the pipeline's stages, as FluxPipeline.__call__ does them for one image: each
// stage ends with the device idle (denoise and decode return host data; encode is synchronized), so a stage's time
// is its own.
RunTimes run_once(Backend& backend, FluxPipeline& pipe, int size, int steps) {
  RunTimes r;
  const auto start = std::chrono::steady_clock::now();
  auto t = start;
  const FluxPromptEmbeds embeds = pipe.encode_tokens(clip_ids(), t5_ids());
  backend.synchronize();
  r.encode_s = since(t);
  t = std::chrono::steady_clock::now();
  const Tensor noise = flux_initial_noise(kNoiseSeed, 1, size, size);
  const Tensor latents = pipe.denoise(noise, size, size, steps, kGuidance, embeds, nullptr, 1.0f);
  r.denoise_s = since(t);
  t = std::chrono::steady_clock::now();
  const std::vector<Rgb8Image> images = pipe.decode(latents, size, size);
  PD_CHECK(images.size() == 1 && images[0].width == size, "decode gave no ", size, "² image");
  r.decode_s = since(t);
  r.total_s = since(start);
  return r;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double median_of(const std::vector<RunTimes>& runs, double RunTimes::*stage) {
  std::vector<double> v;
  for (const RunTimes& r : runs) v.push_back(r.*stage);
  return median(v);
}

double gib(size_t bytes) { return double(bytes) / double(1ull << 30); }

}  // namespace

int bench_pipeline_command(int argc, char** argv, int first) {
  std::string device = "auto";
  int size = 1024, steps = 28, warmup = 1, iters = 3;
  bool json = false, tiny = false;
  ArgParser p("bench pipeline",
              "Times FLUX.1-dev text-to-image end to end (encode, denoise, decode) with random weights of the real "
              "shapes (bf16 on a GPU), one 77 + 512 token prompt, one square image.");
  p.option("device", "", &device, "cpu, cuda, cuda:N or auto");
  p.option("size", "", &size, "image size in pixels (square, a multiple of 16)");
  p.option("steps", "", &steps, "denoising steps");
  p.option("warmup", "", &warmup, "untimed runs first");
  p.option("iters", "", &iters, "timed runs (medians per stage are reported)");
  p.flag("json", "", &json, "print one JSON object instead of a table");
  p.flag("tiny", "", &tiny, "the same networks with models/tiny-flux's widths and depths: a smoke test");
  if (!p.parse(argc, argv, first + 1)) {
    std::printf("%s", p.usage().c_str());
    return 0;
  }
  PD_REQUIRE(iters >= 1 && warmup >= 0 && steps >= 1, "--iters and --steps must be at least 1, --warmup at least 0");
  check_flux_image_size(size, size);
  const std::string model = tiny ? "tiny" : "FLUX.1-dev";

  auto backend = create_backend(device);
  const auto load_start = std::chrono::steady_clock::now();
  auto pipe = FluxPipeline::random(*backend, tiny ? tiny_configs() : FluxNetworkConfigs{}, kWeightSeed);
  backend->synchronize();
  const double load_s = since(load_start);
  // Device memory as the caching allocator counts it (bench transformer's rule); 0 on backends without one.
  auto* const memory = dynamic_cast<CachingAllocator*>(&backend->allocator());
  const double weights_gib = memory ? gib(memory->stats().in_use) : 0.0;
  if (!json) {
    std::printf("paradit bench pipeline: %s, random weights (%.2f GiB on the device, made in %.1f s), %d² image, "
                "%d steps\ndevice: %s; median of %d after %d warm-up\n\n",
                model.c_str(), weights_gib, load_s, size, steps, backend->name().c_str(), iters, warmup);
  }

  if (memory) memory->reset_peak();
  std::vector<RunTimes> runs;  // the timed ones
  double first_run_s = 0;      // what a one-shot user waits (caches, autotuning, the T5 position bias table)
  for (int i = 0; i < warmup + iters; ++i) {
    const RunTimes r = run_once(*backend, *pipe, size, steps);
    if (i == 0) first_run_s = r.total_s;
    if (i >= warmup) runs.push_back(r);
  }
  const double peak_gib = memory ? gib(memory->stats().peak_in_use) : 0.0;

  const double enc = median_of(runs, &RunTimes::encode_s), den = median_of(runs, &RunTimes::denoise_s);
  const double dec = median_of(runs, &RunTimes::decode_s), tot = median_of(runs, &RunTimes::total_s);
  std::vector<double> totals;
  for (const RunTimes& r : runs) totals.push_back(r.total_s);
  if (json) {
    std::printf("{\"bench\":\"pipeline\",\"engine\":\"paradit\",\"model\":\"%s\",\"device\":\"%s\",\"size\":%d,"
                "\"steps\":%d,\"iters\":%d,\"encode_s\":%.4f,\"denoise_s\":%.4f,\"decode_s\":%.4f,\"total_s\":%.4f,"
                "\"step_ms\":%.2f,\"min_total_s\":%.4f,\"first_run_s\":%.4f,\"load_s\":%.2f,\"weights_gib\":%.2f,"
                "\"peak_gib\":%.2f}\n",
                model.c_str(), backend->name().c_str(), size, steps, iters, enc, den, dec, tot, 1e3 * den / steps,
                *std::min_element(totals.begin(), totals.end()), first_run_s, load_s, weights_gib, peak_gib);
  } else {
    std::printf("| stage | median s | |\n|---|---|---|\n");
    std::printf("| encode (CLIP + T5) | %.3f | |\n", enc);
    std::printf("| denoise (%d steps) | %.3f | %.1f ms/step |\n", steps, den, 1e3 * den / steps);
    std::printf("| decode (VAE + RGB) | %.3f | |\n", dec);
    std::printf("| total | %.3f | min %.3f, first run %.3f |\n", tot, *std::min_element(totals.begin(), totals.end()),
                first_run_s);
    std::printf("\npeak device memory %.2f GiB\n", peak_gib);
  }
  std::fflush(stdout);
  return 0;
}

}  // namespace paradit::cli
