// FluxPipeline on the CUDA backend (bf16) against the CPU backend (fp32) and diffusers (tests/fixtures/pipeline):
// the same initial latents, or the same seed, must give the same images within bf16 tolerance.
#include <algorithm>
#include <cmath>
#include <string>

#include <nlohmann/json.hpp>

#include "paradit/io/safetensors.h"
#include "paradit/pipeline/flux_pipeline.h"
#include "paradit/pipeline/latents.h"
#include "test_util.h"

namespace paradit {
namespace {

// bf16 weights and activations through CLIP, T5, a few transformer steps and the VAE: the latents drift by about a
// percent, pixels by a few 8-bit levels on average.
constexpr double kLatentTol = 3e-2;
constexpr double kMeanPixelTol = 2.0;
constexpr int kMaxPixelTol = 16;

FluxPipelineSources tiny_flux() {
  FluxPipelineSources s;
  s.model_dir = test::fixtures_dir() + "/../../models/tiny-flux";
  return s;
}

struct PixelDiff {
  double mean = 0;
  int max = 0;
};

PixelDiff pixel_diff(const std::vector<Rgb8Image>& a, const std::vector<Rgb8Image>& b) {
  EXPECT_EQ(a.size(), b.size());
  PixelDiff d;
  int64_t n = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    EXPECT_EQ(a[i].pixels.size(), b[i].pixels.size());
    for (size_t j = 0; j < std::min(a[i].pixels.size(), b[i].pixels.size()); ++j) {
      const int e = std::abs(int(a[i].pixels[j]) - int(b[i].pixels[j]));
      d.mean += e;
      d.max = std::max(d.max, e);
      ++n;
    }
  }
  d.mean /= double(std::max<int64_t>(n, 1));
  return d;
}

// diffusers' 8-bit images of a fixture case as Rgb8Images.
std::vector<Rgb8Image> fixture_images(const SafetensorsFile& f) {
  const Tensor t = test::to_contiguous_f32(f.get("image"));
  std::vector<Rgb8Image> images;
  for (int64_t b = 0; b < t.size(0); ++b) {
    Rgb8Image img;
    img.height = t.size(1);
    img.width = t.size(2);
    const int64_t n = img.height * img.width * 3;
    for (int64_t i = 0; i < n; ++i) img.pixels.push_back(uint8_t(t.data_as<float>()[b * n + i]));
    images.push_back(std::move(img));
  }
  return images;
}

TEST(PipelineGpu, SameLatentsGiveTheCpuAndDiffusersImages) {
  PD_REQUIRE_GPU(cuda);
  auto cpu = create_cpu_backend();
  auto on_cpu = FluxPipeline::load(*cpu, tiny_flux());
  auto on_gpu = FluxPipeline::load(*cuda, tiny_flux());
  for (const std::string name : {"base", "cfg"}) {
    const std::string path = test::fixtures_dir() + "/pipeline/" + name + ".safetensors";
    const SafetensorsFile f = SafetensorsFile::open(path);
    const nlohmann::json a = nlohmann::json::parse(f.metadata().at("case"));
    FluxRequest req;
    req.prompt = a["prompt"];
    if (!a["negative_prompt"].is_null()) req.negative_prompt = a["negative_prompt"].get<std::string>();
    req.true_cfg_scale = a["true_cfg_scale"];
    req.guidance = a["guidance"];
    req.steps = a["steps"];
    req.width = a["width"];
    req.height = a["height"];
    req.batch_count = a["batch"];
    req.max_sequence_length = a["max_sequence_length"];
    req.init_latents = load_init_latents(path, req.batch_count, req.height, req.width);

    const FluxResult ref = on_cpu->generate(req);
    const FluxResult got = on_gpu->generate(req);
    EXPECT_LE(test::rel_l2(got.latents, ref.latents), kLatentTol) << name;
    for (const auto& [what, d] : {std::pair<const char*, PixelDiff>{"cpu", pixel_diff(got.images, ref.images)},
                                  {"diffusers", pixel_diff(got.images, fixture_images(f))}}) {
      EXPECT_LE(d.mean, kMeanPixelTol) << name << " vs " << what;
      EXPECT_LE(d.max, kMaxPixelTol) << name << " vs " << what;
    }
  }
}

TEST(PipelineGpu, SeedGivesTheSameNoiseOnEveryBackend) {
  PD_REQUIRE_GPU(cuda);
  auto cpu = create_cpu_backend();
  FluxRequest req;
  req.prompt = "a lighthouse on a cliff";
  req.width = 64;
  req.height = 32;
  req.steps = 3;
  req.seed = 2024;
  req.batch_count = 2;
  const FluxResult ref = FluxPipeline::load(*cpu, tiny_flux())->generate(req);
  const FluxResult got = FluxPipeline::load(*cuda, tiny_flux())->generate(req);
  EXPECT_EQ(got.seeds, ref.seeds);
  EXPECT_LE(test::rel_l2(got.latents, ref.latents), kLatentTol);
  const PixelDiff d = pixel_diff(got.images, ref.images);
  EXPECT_LE(d.mean, kMeanPixelTol);
  EXPECT_LE(d.max, kMaxPixelTol);
}

}  // namespace
}  // namespace paradit
