// `paradit bench transformer`: the FLUX transformer forward on one device with random weights of the real
// shape, timed per forward (median after warm-up), with achieved TFLOP/s and peak device memory.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <sstream>

#include "cli/args.h"
#include "cli/commands.h"
#include "paradit/backend/backend.h"
#include "paradit/core/log.h"
#include "paradit/models/flux_cost.h"
#include "paradit/models/flux_transformer.h"

namespace paradit::cli {

namespace {

struct BenchRow {
  int size;
  int64_t image_tokens, text_tokens;
  double median_ms, min_ms, tflops;
  double peak_gib;
};

Tensor make_ids(int h, int w) {
  Tensor ids = Tensor::empty({int64_t(h) * w, 3}, DType::kF32, cpu_allocator());
  float* p = ids.data_as<float>();
  for (int r = 0; r < h; ++r)
    for (int c = 0; c < w; ++c) {
      float* row = p + (int64_t(r) * w + c) * 3;
      row[0] = 0;
      row[1] = float(r);
      row[2] = float(c);
    }
  return ids;
}

double peak_gib(Backend& backend) {
  auto* caching = dynamic_cast<CachingAllocator*>(&backend.allocator());
  return caching ? double(caching->stats().peak_in_use) / double(1ull << 30) : 0.0;
}

BenchRow bench_size(Backend& backend, FluxTransformer& model, int size, int text_len, int warmup, int iters) {
  const FluxConfig& c = model.config();
  const int h = size / 16, w = size / 16;
  FluxInputs in;
  in.hidden_states = backend.empty({1, int64_t(h) * w, c.in_channels});
  in.encoder_hidden_states = backend.empty({1, text_len, c.joint_attention_dim});
  in.pooled_projections = backend.empty({1, c.pooled_projection_dim});
  backend.fill_random(in.hidden_states, 101, 1.0f);
  backend.fill_random(in.encoder_hidden_states, 102, 1.0f);
  backend.fill_random(in.pooled_projections, 103, 1.0f);
  in.timestep = {0.75f};
  if (c.guidance_embeds) in.guidance = {3.5f};
  in.img_ids = make_ids(h, w);
  in.txt_ids = Tensor::empty({text_len, 3}, DType::kF32, cpu_allocator());
  std::fill_n(in.txt_ids.data_as<float>(), text_len * 3, 0.0f);

  if (auto* caching = dynamic_cast<CachingAllocator*>(&backend.allocator())) caching->reset_peak();
  for (int i = 0; i < warmup; ++i) model.forward(in);
  backend.synchronize();
  std::vector<double> ms;
  for (int i = 0; i < iters; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    model.forward(in);
    backend.synchronize();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::vector<double> sorted = ms;
  std::sort(sorted.begin(), sorted.end());
  const double median = iters % 2 ? sorted[iters / 2] : 0.5 * (sorted[iters / 2 - 1] + sorted[iters / 2]);
  const double flops = flux_forward_flops(c, int64_t(h) * w, text_len).total();
  return {size, int64_t(h) * w, text_len, median, sorted.front(), flops / (median * 1e-3) / 1e12, peak_gib(backend)};
}

}  // namespace

int bench_command(int argc, char** argv, int first) {
  std::string what = first < argc ? argv[first] : "";
  if (what == "pipeline") return bench_pipeline_command(argc, argv, first);
  if (what == "fidelity") return bench_fidelity_command(argc, argv, first);
  if (what != "transformer") {
    std::fprintf(stderr, "usage: paradit bench transformer|pipeline|fidelity [options]\n");
    return 2;
  }
  std::string device = "auto", variant = "dev";
  std::vector<int> sizes = {1024, 2048};
  int text_len = 512, warmup = 3, iters = 10, layers = -1, single_layers = -1;
  bool json = false;
  ArgParser p("bench transformer",
              "Times one FLUX.1 transformer forward with random weights of the real shape (bf16 on a GPU).");
  p.option("device", "", &device, "cpu, cuda, cuda:N or auto");
  p.option("model", "", &variant, "dev or schnell (the published FLUX.1 configs)");
  p.option("sizes", "", &sizes, "image sizes in pixels (square), comma-separated");
  p.option("text-len", "", &text_len, "T5 tokens");
  p.option("warmup", "", &warmup, "untimed forwards first");
  p.option("iters", "", &iters, "timed forwards (the median is reported)");
  p.option("layers", "", &layers, "double-stream blocks (default: the model's)");
  p.option("single-layers", "", &single_layers, "single-stream blocks (default: the model's)");
  p.flag("json", "", &json, "print one JSON object per size instead of a table");
  if (!p.parse(argc, argv, first + 1)) {
    std::printf("%s", p.usage().c_str());
    return 0;
  }
  PD_REQUIRE(variant == "dev" || variant == "schnell", "--model must be dev or schnell, got '", variant, "'");
  PD_REQUIRE(iters >= 1 && warmup >= 0, "--iters must be at least 1 and --warmup at least 0");
  for (int s : sizes) PD_REQUIRE(s >= 16 && s % 16 == 0, "image size ", s, " is not a positive multiple of 16");
  FluxConfig config = variant == "dev" ? FluxConfig::dev() : FluxConfig::schnell();
  if (layers >= 0) config.num_layers = layers;
  if (single_layers >= 0) config.num_single_layers = single_layers;

  auto backend = create_backend(device);
  auto model = FluxTransformer::random(*backend, config, 42);
  backend->synchronize();
  if (!json) {
    std::printf("paradit bench transformer: FLUX.1-%s (%d double + %d single blocks, hidden %d), random weights %.2f GiB\n",
                variant.c_str(), config.num_layers, config.num_single_layers, config.hidden(),
                double(model->weight_bytes()) / double(1ull << 30));
    std::printf("device: %s; median of %d after %d warm-up\n\n", backend->name().c_str(), iters, warmup);
    std::printf("| size | tokens (img+txt) | median ms | min ms | TFLOP/s | peak GiB |\n|---|---|---|---|---|---|\n");
  }
  for (int size : sizes) {
    BenchRow r = bench_size(*backend, *model, size, text_len, warmup, iters);
    if (json) {
      std::printf("{\"bench\":\"transformer\",\"model\":\"%s\",\"device\":\"%s\",\"size\":%d,\"image_tokens\":%lld,"
                  "\"text_tokens\":%lld,\"median_ms\":%.3f,\"min_ms\":%.3f,\"tflops\":%.1f,\"peak_gib\":%.2f}\n",
                  variant.c_str(), backend->name().c_str(), r.size, (long long)r.image_tokens,
                  (long long)r.text_tokens, r.median_ms, r.min_ms, r.tflops, r.peak_gib);
    } else {
      std::printf("| %d² | %lld+%lld | %.2f | %.2f | %.1f | %.2f |\n", r.size, (long long)r.image_tokens,
                  (long long)r.text_tokens, r.median_ms, r.min_ms, r.tflops, r.peak_gib);
    }
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace paradit::cli
