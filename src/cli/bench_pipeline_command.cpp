// `paradit bench pipeline`: the whole FLUX.1-dev text-to-image pipeline with random weights of the real shapes
// (T5-XXL, CLIP-L, transformer, VAE): encode, `steps` denoising steps, decode to 8-bit RGB, each stage timed
// (median over runs after a warm-up). On one device it calls the pipeline's stages itself and reports peak device
// memory; with mesh flags (--tp, --ulysses, --ring, --cfg-parallel, --gpus, and PipeFusion's and patch parallel's
// flags) it runs requests through the Engine over that many ranks, as `paradit generate` does. The peers are bench/peers/diffusers_flux_pipeline.py (one GPU) and
// bench/peers/xdit_flux.py (several), fed the same token ids.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/sp_flags.h"
#include "cli/stale_flags.h"
#include "paradit/backend/backend.h"
#include "paradit/backend/region_tally.h"
#include "paradit/core/allocator.h"
#include "paradit/core/status.h"
#include "paradit/pipeline/flux_pipeline.h"
#include "paradit/pipeline/latents.h"
#include "paradit/runtime/engine.h"
#include "paradit/runtime/mesh_plan.h"

namespace paradit::cli {
namespace {

constexpr uint64_t kWeightSeed = 42, kNoiseSeed = 0;
constexpr float kGuidance = 3.5f;  // FluxPipeline's default
constexpr float kTrueCfgScale = 4.0f;  // with --cfg-parallel: true CFG (the negative prompt is the same ids)

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

struct RunTimes {
  double encode_s = 0, denoise_s = 0, decode_s = 0, total_s = 0;
};

double since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// One prompt → image run through the pipeline's stages, as FluxPipeline.__call__ does them for one image: each
// stage ends with the device idle (denoise and decode return host data; encode is synchronized), so a stage's time
// is its own.
RunTimes run_once(Backend& backend, FluxPipeline& pipe, int size, int steps, bool true_cfg) {
  RunTimes r;
  const auto start = std::chrono::steady_clock::now();
  auto t = start;
  const FluxPromptEmbeds embeds = pipe.encode_tokens(clip_ids(), t5_ids());
  FluxPromptEmbeds negative;
  if (true_cfg) negative = pipe.encode_tokens(clip_ids(), t5_ids());
  backend.synchronize();
  r.encode_s = since(t);
  t = std::chrono::steady_clock::now();
  const Tensor noise = flux_initial_noise(kNoiseSeed, 1, size, size);
  const Tensor latents = pipe.denoise(noise, size, size, steps, kGuidance, embeds, true_cfg ? &negative : nullptr,
                                      true_cfg ? kTrueCfgScale : 1.0f);
  r.denoise_s = since(t);
  t = std::chrono::steady_clock::now();
  backend.mark_region("decode: latents");
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

struct BenchSetup {
  std::string device, model;
  FluxNetworkConfigs configs;
  int size = 1024, steps = 28, warmup = 1, iters = 3;
  bool json = false, true_cfg = false, profile = false;
};

// --profile: rank 0's device time per region (Backend::mark_region), summed over the timed runs; reported per
// denoising step (encode and decode regions too, so that the shares add up to a whole run).
std::vector<RegionTime> per_step(RegionTally& tally, const BenchSetup& b) {
  std::vector<RegionTime> times = tally.take();
  for (RegionTime& t : times) t.ms /= double(b.iters) * b.steps;
  return times;
}

// ,"regions_ms_per_step":{"name":ms,...}
std::string regions_json(const std::vector<RegionTime>& times) {
  if (times.empty()) return "";
  std::string out = ",\"regions_ms_per_step\":{";
  for (const RegionTime& t : times) out += detail::concat(&t == &times.front() ? "" : ",", "\"", t.name, "\":", t.ms);
  return out + "}";
}

// A table on stderr (stdout keeps the one JSON line).
void print_regions(const std::vector<RegionTime>& times) {
  if (times.empty()) return;
  double all = 0;
  for (const RegionTime& t : times) all += t.ms;
  std::fprintf(stderr, "\n| region (rank 0, device time) | ms per step | share |\n|---|---|---|\n");
  for (const RegionTime& t : times)
    std::fprintf(stderr, "| %s | %.2f | %.1f%% |\n", t.name.c_str(), t.ms, 100.0 * t.ms / all);
  std::fprintf(stderr, "| all | %.2f | |\n", all);
}

// The stage medians as a table or one JSON object; `extra` adds JSON fields (leading comma included).
void print_results(const BenchSetup& b, const std::string& device_name, const std::vector<RunTimes>& runs,
                   double first_run_s, double load_s, const std::string& extra, const std::string& memory_line) {
  const double enc = median_of(runs, &RunTimes::encode_s), den = median_of(runs, &RunTimes::denoise_s);
  const double dec = median_of(runs, &RunTimes::decode_s), tot = median_of(runs, &RunTimes::total_s);
  std::vector<double> totals;
  for (const RunTimes& r : runs) totals.push_back(r.total_s);
  const double min_total = *std::min_element(totals.begin(), totals.end());
  if (b.json) {
    std::printf("{\"bench\":\"pipeline\",\"engine\":\"paradit\",\"model\":\"%s\",\"device\":\"%s\",\"size\":%d,"
                "\"steps\":%d,\"iters\":%d,\"true_cfg\":%s,\"encode_s\":%.4f,\"denoise_s\":%.4f,\"decode_s\":%.4f,"
                "\"total_s\":%.4f,\"step_ms\":%.2f,\"min_total_s\":%.4f,\"first_run_s\":%.4f,\"load_s\":%.2f%s}\n",
                b.model.c_str(), device_name.c_str(), b.size, b.steps, b.iters, b.true_cfg ? "true" : "false", enc, den,
                dec, tot, 1e3 * den / b.steps, min_total, first_run_s, load_s, extra.c_str());
  } else {
    std::printf("| stage | median s | |\n|---|---|---|\n");
    std::printf("| encode (CLIP + T5) | %.3f | |\n", enc);
    std::printf("| denoise (%d steps) | %.3f | %.1f ms/step |\n", b.steps, den, 1e3 * den / b.steps);
    std::printf("| decode (VAE + RGB) | %.3f | |\n", dec);
    std::printf("| total | %.3f | min %.3f, first run %.3f |\n", tot, min_total, first_run_s);
    if (!memory_line.empty()) std::printf("\n%s\n", memory_line.c_str());
  }
  std::fflush(stdout);
}

// One device: the pipeline's stages called one by one, with the caching allocator's memory counts.
void bench_one_device(const BenchSetup& b) {
  auto backend = create_backend(b.device);
  const auto load_start = std::chrono::steady_clock::now();
  auto pipe = FluxPipeline::random(*backend, b.configs, kWeightSeed);
  backend->synchronize();
  const double load_s = since(load_start);
  // Device memory as the caching allocator counts it (bench transformer's rule); 0 on backends without one.
  auto* const memory = dynamic_cast<CachingAllocator*>(&backend->allocator());
  const double weights_gib = memory ? gib(memory->stats().in_use) : 0.0;
  if (!b.json) {
    std::printf("paradit bench pipeline: %s, random weights (%.2f GiB on the device, made in %.1f s), %d² image, "
                "%d steps%s\ndevice: %s; median of %d after %d warm-up\n\n",
                b.model.c_str(), weights_gib, load_s, b.size, b.steps, b.true_cfg ? ", true CFG" : "",
                backend->name().c_str(), b.iters, b.warmup);
  }
  if (memory) memory->reset_peak();
  std::vector<RunTimes> runs;  // the timed ones
  double first_run_s = 0;      // what a one-shot user waits (caches, autotuning, the T5 position bias table)
  RegionTally regions;
  backend->set_region_timing(b.profile);
  for (int i = 0; i < b.warmup + b.iters; ++i) {
    backend->mark_region("encode");
    const RunTimes r = run_once(*backend, *pipe, b.size, b.steps, b.true_cfg);
    const std::vector<RegionTime> times = backend->take_region_times();
    if (i == 0) first_run_s = r.total_s;
    if (i >= b.warmup) {
      runs.push_back(r);
      regions.add(times);
    }
  }
  const double peak_gib = memory ? gib(memory->stats().peak_in_use) : 0.0;
  char extra[96], line[64];
  std::snprintf(extra, sizeof extra, ",\"ranks\":1,\"weights_gib\":%.2f,\"peak_gib\":%.2f", weights_gib, peak_gib);
  std::snprintf(line, sizeof line, "peak device memory %.2f GiB", peak_gib);
  const std::vector<RegionTime> times = per_step(regions, b);
  print_results(b, backend->name(), runs, first_run_s, load_s, extra + regions_json(times), line);
  print_regions(times);
}

// Several ranks: whole requests through the Engine (every rank holds the random pipeline; rank 0 encodes).
// `options` holds PipeFusion's and patch parallel's settings; `note` says why the result is approximate, if it is.
void bench_engine(const BenchSetup& b, const MeshRequest& mesh_request, EngineOptions options,
                  const std::string& note) {
  options.device = b.device;
  options.transformer_config = b.configs.transformer;
  options.mesh = plan_mesh(mesh_request, b.configs.transformer.num_attention_heads, b.true_cfg).degrees();
  require_cfg_parallel_fits(options.mesh, b.true_cfg);
  const FluxNetworkConfigs configs = b.configs;
  options.make_pipeline = [configs](Backend& backend, int, const FluxPipelineOptions& o) {
    return FluxPipeline::random(backend, configs, kWeightSeed, o);
  };
  auto engine = Engine::create(options);
  const std::string flags = engine->mesh().degrees().flags();
  if (!b.json) {
    std::printf("paradit bench pipeline: %s, random weights, %d² image, %d steps%s\nranks: %s (made in %.1f s); "
                "median of %d after %d warm-up\n\n",
                b.model.c_str(), b.size, b.steps, b.true_cfg ? ", true CFG" : "", engine->device_name().c_str(),
                engine->load_seconds(), b.iters, b.warmup);
  }
  FluxRequest req;
  req.prompt_tokens = FluxPromptTokens{clip_ids(), t5_ids()};
  if (b.true_cfg) {
    req.negative_prompt_tokens = req.prompt_tokens;
    req.true_cfg_scale = kTrueCfgScale;
  }
  req.guidance = kGuidance;
  req.steps = b.steps;
  req.width = req.height = b.size;
  req.seed = kNoiseSeed;
  std::vector<RunTimes> runs;
  double first_run_s = 0;
  RegionTally regions;
  for (int i = 0; i < b.warmup + b.iters; ++i) {
    const auto start = std::chrono::steady_clock::now();
    const FluxResult result = engine->generate(req);
    RunTimes r;
    r.total_s = since(start);
    r.encode_s = result.timings.encode_s;
    r.denoise_s = result.timings.denoise_s;
    r.decode_s = result.timings.decode_s;
    if (i == 0) first_run_s = r.total_s;
    if (i >= b.warmup) {
      runs.push_back(r);
      regions.add(result.timings.regions);
    }
  }
  if (!note.empty() && !b.json) std::printf("note: %s\n\n", note.c_str());
  // Device memory per rank in the last request: the largest peak (the GPU that must fit it) and each rank's.
  const auto two = [](double v) {
    char text[32];
    std::snprintf(text, sizeof text, "%.2f", v);
    return std::string(text);
  };
  std::string peaks, weights;
  double max_peak = 0;
  for (const RankMemory& m : engine->memory()) {
    const double p = m.peak_bytes ? gib(*m.peak_bytes) : 0.0;
    max_peak = std::max(max_peak, p);
    peaks += detail::concat(peaks.empty() ? "" : ",", two(p));
    weights += detail::concat(weights.empty() ? "" : ",", two(gib(m.weight_bytes)));
  }
  const std::string extra = detail::concat(",\"ranks\":", engine->mesh().world(), ",\"mesh\":\"", flags,
                                           "\",\"exact\":", note.empty() ? "true" : "false", ",\"peak_gib\":",
                                           two(max_peak), ",\"peak_gib_per_rank\":[", peaks,
                                           "],\"weights_gib_per_rank\":[", weights, "]");
  const std::vector<RegionTime> times = per_step(regions, b);
  print_results(b, engine->device_name(), runs, first_run_s, engine->load_seconds(), extra + regions_json(times), "");
  print_regions(times);
}

}  // namespace

int bench_pipeline_command(int argc, char** argv, int first) {
  BenchSetup b;
  b.device = "auto";
  bool tiny = false;
  SpTuningArgs sp;
  MeshRequest mesh;
  StaleArgs stale;
  ArgParser p("bench pipeline",
              "Times FLUX.1-dev text-to-image end to end (encode, denoise, decode) with random weights of the real "
              "shapes (bf16 on a GPU), one 77 + 512 token prompt, one square image; on one device, or over ranks "
              "with the mesh flags of `paradit generate`.");
  p.option("device", "", &b.device, "cpu, cuda, cuda:N or auto (several ranks: cpu, cuda or auto)");
  p.option("size", "", &b.size, "image size in pixels (square, a multiple of 16)");
  p.option("steps", "", &b.steps, "denoising steps");
  p.option("warmup", "", &b.warmup, "untimed runs first");
  p.option("iters", "", &b.iters, "timed runs (medians per stage are reported)");
  p.flag("true-cfg", "", &b.true_cfg, "true CFG (a negative prompt, CFG scale 4): two transformer passes per step");
  p.option("tp", "", &mesh.tp, "tensor-parallel degree");
  p.option("ulysses", "", &mesh.ulysses, "Ulysses degree");
  p.option("ring", "", &mesh.ring, "Ring degree");
  add_sp_tuning_options(p, sp);
  p.flag("cfg-parallel", "", &mesh.cfg_parallel, "true CFG's two passes on two halves of the ranks (implies --true-cfg)");
  p.option("gpus", "", &mesh.ranks, "ranks: alone it picks the mesh, with degrees their product");
  add_stale_options(p, stale);
  p.flag("json", "", &b.json, "print one JSON object instead of a table");
  p.flag("profile", "", &b.profile,
         "also time regions of each run on rank 0's device (GEMMs, attention with its transfers, norms, ...): a "
         "table on stderr, regions_ms_per_step in the JSON");
  p.flag("tiny", "", &tiny, "the same networks with models/tiny-flux's widths and depths: a smoke test");
  if (!p.parse(argc, argv, first + 1)) {
    std::printf("%s", p.usage().c_str());
    return 0;
  }
  PD_REQUIRE(b.iters >= 1 && b.warmup >= 0 && b.steps >= 1,
             "--iters and --steps must be at least 1, --warmup at least 0");
  PD_REQUIRE(mesh.tp >= 1 && mesh.ulysses >= 0 && mesh.ring >= 0 && mesh.ranks >= 0,
             "--tp, --ulysses, --ring and --gpus must be positive");
  check_flux_image_size(b.size, b.size);
  b.model = tiny ? "tiny" : "FLUX.1-dev";
  b.configs = tiny ? FluxNetworkConfigs::tiny() : FluxNetworkConfigs{};
  b.true_cfg = b.true_cfg || mesh.cfg_parallel;
  EngineOptions options;
  apply_sp_tuning_args(sp, options);
  options.pipeline.time_regions = b.profile;
  apply_stale_args(stale, mesh, options);  // --pipefusion: mesh.pp; --patch-parallel: mesh.ring
  const bool several = mesh.tp > 1 || mesh.ulysses > 1 || mesh.ring > 1 || mesh.pp > 1 || mesh.cfg_parallel ||
                       mesh.ranks > 1;
  several ? bench_engine(b, mesh, options, approximation_note(stale, b.steps)) : bench_one_device(b);
  return 0;
}

}  // namespace paradit::cli
