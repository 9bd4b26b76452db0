// `paradit bench fidelity`: how far the approximate methods (PipeFusion and patch parallel with fewer warm-up
// steps than steps) land from the exact image. Over a fixed prompt set, each method and degree generates the
// same seeds as one device does, and the table gives PSNR (mean and worst over the prompts) and the largest 8-bit
// pixel error against the single-device image. Without --model it runs the embedded tiny random pipeline on CPU
// ranks, which measures the mechanism, not FLUX.1's visual quality.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include "cli/args.h"
#include "cli/commands.h"
#include "paradit/core/log.h"
#include "paradit/core/status.h"
#include "paradit/runtime/engine.h"

namespace paradit::cli {
namespace {

const std::vector<std::string> kPrompts = {
    "a red fox in the snow", "an astronaut riding a horse on the moon", "a bowl of ramen, studio photo",
    "a watercolor painting of a lighthouse at dusk"};

struct Args {
  std::string device = "cpu";
  FluxPipelineSources sources;
  int steps = 8, size = 128, threads_per_rank = 1, max_sequence_length = 64;
  std::vector<int> warmups = {1, 2, 4};
};

struct Method {
  std::string name;
  MeshDegrees mesh;
  int patches = 0;
  bool patch_parallel = false;
};

std::vector<Method> methods() {
  return {{"PipeFusion", {.pp = 2}, 0},      {"PipeFusion", {.pp = 2}, 4},      {"PipeFusion", {.pp = 4}, 0},
          {"PipeFusion", {.pp = 4}, 8},      {"Patch parallel", {.ring = 2}, 0, true},
          {"Patch parallel", {.ring = 4}, 0, true}, {"Patch parallel", {.ring = 8}, 0, true}};
}

struct Error8 {
  double psnr_mean = 0, psnr_min = std::numeric_limits<double>::infinity();
  int max_pixel = 0;
};

// PSNR of 8-bit images (infinite when equal) and the largest pixel difference.
void compare(const Rgb8Image& got, const Rgb8Image& want, double* psnr, int* max_pixel) {
  PD_CHECK(got.pixels.size() == want.pixels.size());
  double se = 0;
  for (size_t i = 0; i < got.pixels.size(); ++i) {
    const int d = int(got.pixels[i]) - int(want.pixels[i]);
    se += double(d) * d;
    *max_pixel = std::max(*max_pixel, std::abs(d));
  }
  const double mse = se / double(got.pixels.size());
  *psnr = mse == 0 ? std::numeric_limits<double>::infinity() : 10 * std::log10(255.0 * 255.0 / mse);
}

std::vector<Rgb8Image> run(const Args& a, const MeshDegrees& mesh, const FluxStaleOptions& stale) {
  EngineOptions o;
  o.device = a.device;
  o.mesh = mesh;
  o.threads_per_rank = a.threads_per_rank;
  o.sources = a.sources;
  o.pipeline.stale = stale;
  auto engine = Engine::create(o);
  std::vector<Rgb8Image> images;
  for (size_t i = 0; i < kPrompts.size(); ++i) {
    FluxRequest r;
    r.prompt = kPrompts[i];
    r.steps = a.steps;
    r.width = r.height = a.size;
    r.seed = 1000 + i;
    r.max_sequence_length = a.max_sequence_length;
    images.push_back(engine->generate(r).images.front());
  }
  return images;
}

std::string db(double v) {
  if (std::isinf(v)) return "exact";
  char b[32];
  std::snprintf(b, sizeof b, "%.1f", v);
  return b;
}

}  // namespace

int bench_fidelity_command(int argc, char** argv, int first) {
  Args a;
  ArgParser p("bench fidelity", "PSNR and max pixel error of PipeFusion and patch parallel (stale K/V) against the "
                                "single-device image, over a fixed prompt set; a Markdown table on stdout.");
  p.option("model", "", &a.sources.model_dir, "diffusers FLUX.1 folder; default: the embedded tiny random pipeline");
  p.option("device", "", &a.device, "cpu (CPU ranks) or cuda (one GPU per rank)");
  p.option("steps", "", &a.steps, "denoising steps");
  p.option("size", "", &a.size, "image width and height, a multiple of 16");
  p.option("max-sequence-length", "", &a.max_sequence_length, "T5 tokens (0: the model's default)");
  p.option("warmup-steps", "", &a.warmups, "warm-up step counts to measure (comma-separated)");
  p.option("threads-per-rank", "", &a.threads_per_rank, "threads of each CPU rank");
  if (!p.parse(argc, argv, first + 1)) {
    std::printf("%s", p.usage().c_str());
    return 0;
  }
  if (a.sources.empty()) a.sources = FluxPipelineSources::embedded_default();
  set_log_level(LogLevel::kError);  // one engine per row: no load messages
  // The exact end of the range, as a check: every step a warm-up step gives the single-device image.
  if (std::find(a.warmups.begin(), a.warmups.end(), a.steps) == a.warmups.end()) a.warmups.push_back(a.steps);

  const std::vector<Rgb8Image> exact = run(a, {}, {});
  std::printf("%zu prompts, %dx%d, %d steps, %d T5 tokens, seeds 1000..%zu; reference: one device.\n\n",
              kPrompts.size(), a.size, a.size, a.steps, a.max_sequence_length, 1000 + kPrompts.size() - 1);
  std::printf("| method | degree | patches | warm-up steps | PSNR mean (dB) | PSNR worst (dB) | max pixel error |\n");
  std::printf("|---|---|---|---|---|---|---|\n");
  for (const Method& m : methods()) {
    for (int warmup : a.warmups) {
      FluxStaleOptions stale;
      stale.patches = m.patches;
      stale.warmup_steps = warmup;
      stale.patch_parallel = m.patch_parallel;
      const std::vector<Rgb8Image> got = run(a, m.mesh, stale);
      Error8 e;
      for (size_t i = 0; i < got.size(); ++i) {
        double psnr = 0;
        compare(got[i], exact[i], &psnr, &e.max_pixel);
        e.psnr_mean += (std::isinf(psnr) ? 0 : psnr) / double(got.size());
        e.psnr_min = std::min(e.psnr_min, psnr);
      }
      if (std::isinf(e.psnr_min)) e.psnr_mean = e.psnr_min;
      const int degree = m.mesh.product();
      const std::string patches = m.patch_parallel ? "-" : std::to_string(m.patches ? m.patches : degree);
      std::printf("| %s | %d | %s | %d of %d | %s | %s | %d |\n", m.name.c_str(), degree, patches.c_str(), warmup,
                  a.steps, db(e.psnr_mean).c_str(), db(e.psnr_min).c_str(), e.max_pixel);
      std::fflush(stdout);
    }
  }
  return 0;
}

}  // namespace paradit::cli
