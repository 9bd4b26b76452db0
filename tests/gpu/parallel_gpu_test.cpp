// Every parallel method on two GPUs through NCCL against one GPU, with the embedded tiny pipeline: Ulysses, Ring,
// tensor parallel, CFG parallel, and PipeFusion and patch parallel with every step a warm-up step (exact). bf16
// on GPUs: the images agree within a few 8-bit levels, not bit for bit (the attention and all-reduce orders
// differ). Then a failing rank: the request fails everywhere with its error and the engine takes the next one.
// Skips without two usable GPUs.
#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>

#include "paradit/pipeline/flux_pipeline.h"
#include "paradit/runtime/engine.h"
#include "test_util.h"

namespace paradit {
namespace {

constexpr int kPixelTol = 3;  // 8-bit levels, bf16 on both sides

FluxPipelineSources tiny_flux() {
  FluxPipelineSources s;
  s.model_dir = test::fixtures_dir() + "/../../models/tiny-flux";
  return s;
}

FluxRequest request(bool true_cfg) {
  FluxRequest r;
  r.prompt = "a photo of a cat";
  r.steps = 3;
  r.max_sequence_length = 7;
  r.seed = 7;
  r.width = 96;
  r.height = 64;
  if (true_cfg) {
    r.negative_prompt = "blurry";
    r.true_cfg_scale = 4.0f;
  }
  return r;
}

int max_pixel_diff(const FluxResult& a, const FluxResult& b) {
  EXPECT_EQ(a.images.size(), b.images.size());
  if (a.images.empty() || b.images.empty() || a.images[0].pixels.size() != b.images[0].pixels.size()) return 256;
  int worst = 0;
  for (size_t i = 0; i < a.images[0].pixels.size(); ++i)
    worst = std::max(worst, std::abs(int(a.images[0].pixels[i]) - int(b.images[0].pixels[i])));
  return worst;
}

struct Method {
  const char* name;
  MeshDegrees mesh;
  bool true_cfg = false;
  bool patch_parallel = false;
};

EngineOptions gpus(const Method& m, int steps) {
  EngineOptions o;
  o.device = "cuda";
  o.mesh = m.mesh;
  o.sources = tiny_flux();
  o.pipeline.stale.warmup_steps = steps;  // PipeFusion and patch parallel: exact
  o.pipeline.stale.patch_parallel = m.patch_parallel;
  return o;
}

class ParallelGpu : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (cuda_device_count(&why) < 2) GTEST_SKIP() << "needs two usable GPUs: " << (why.empty() ? "one found" : why);
  }
};

TEST_F(ParallelGpu, EveryMethodOnTwoGpusGivesTheOneGpuImage) {
  const FluxRequest plain = request(false), cfg = request(true);
  auto one = Engine::create(gpus({"one", {}}, plain.steps));
  const FluxResult want = one->generate(plain), want_cfg = one->generate(cfg);
  one.reset();
  for (const Method& m : {Method{"ulysses 2", {.ulysses = 2}}, Method{"ring 2", {.ring = 2}},
                          Method{"tp 2", {.tp = 2}}, Method{"cfg parallel", {.cfg = 2}, true},
                          Method{"ulysses 2 + true CFG", {.ulysses = 2}, true}, Method{"pipefusion 2", {.pp = 2}},
                          Method{"patch parallel 2", {.ring = 2}, false, true}}) {
    SCOPED_TRACE(m.name);
    auto engine = Engine::create(gpus(m, plain.steps));
    const FluxResult got = engine->generate(m.true_cfg ? cfg : plain);
    EXPECT_LE(max_pixel_diff(got, m.true_cfg ? want_cfg : want), kPixelTol);
  }
}

TEST_F(ParallelGpu, ABadRequestFailsOnEveryRankAndTheNextRuns) {
  auto engine = Engine::create(gpus({"ulysses 2", {.ulysses = 2}}, 3));
  FluxRequest bad = request(false);
  bad.width = 100;  // not a multiple of 16
  EXPECT_THROW(engine->generate(bad), Error);
  const FluxResult r = engine->generate(request(false));
  ASSERT_EQ(r.images.size(), 1u);
  EXPECT_EQ(r.images[0].width, 96);
}

}  // namespace
}  // namespace paradit
