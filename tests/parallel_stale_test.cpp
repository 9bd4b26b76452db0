// PipeFusion and patch parallel on CPU ranks (threads, in-process communicators, 1-thread CPU backends) with
// models/tiny-flux (4 blocks), against the single-device pipeline:
// - with every step a warm-up step, every mesh of world ≤ 8 that includes pp or patch parallel (× ulysses ×
//   ring × cfg × dp), and some with tp, gives the single-device images;
// - with fewer warm-up steps, tensor, sequence, CFG and data parallelism around them change nothing (the
//   approximation is the method's, not the mesh's), one patch is exact, and patch counts 1–16 with uneven bands run to the end;
// - a rank that throws mid-step stops every rank with its error and the engine serves the next request;
// - impossible combinations are refused.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "failing_backend.h"
#include "paradit/comm/in_process.h"
#include "paradit/parallel/pipefusion_schedule.h"
#include "paradit/pipeline/flux_pipeline.h"
#include "paradit/runtime/engine.h"
#include "test_util.h"

namespace paradit {
namespace {

constexpr double kLatentTol = 1e-5;  // exact methods vs serial in fp32 (DESIGN.md)
constexpr int kPixelTol = 1;         // 8-bit levels

FluxPipelineSources tiny_flux() {
  FluxPipelineSources s;
  s.model_dir = test::fixtures_dir() + "/../../models/tiny-flux";
  return s;
}

// 64×48 pixels: 4×3 = 12 image tokens, T = 7 text tokens; with and without true CFG; 2 images (dp splits them).
FluxRequest request(bool cfg, int steps = 2) {
  FluxRequest r;
  r.prompt = "a red fox";
  r.steps = steps;
  r.max_sequence_length = 7;
  r.seed = 5;
  r.width = 64;
  r.height = 48;
  r.batch_count = 2;
  if (cfg) {
    r.negative_prompt = "blurry";
    r.true_cfg_scale = 2.5f;
  }
  return r;
}

const FluxResult& serial(bool cfg, int steps = 2) {
  static std::map<std::pair<bool, int>, FluxResult> cache;
  auto it = cache.find({cfg, steps});
  if (it == cache.end()) {
    auto be = create_cpu_backend(1);
    it = cache.emplace(std::pair(cfg, steps), FluxPipeline::load(*be, tiny_flux())->generate(request(cfg, steps)))
             .first;
  }
  return it->second;
}

int max_pixel_diff(const FluxResult& a, const FluxResult& b) {
  int worst = 0;
  EXPECT_EQ(a.images.size(), b.images.size());
  for (size_t i = 0; i < std::min(a.images.size(), b.images.size()); ++i)
    for (size_t p = 0; p < a.images[i].pixels.size(); ++p)
      worst = std::max(worst, std::abs(int(a.images[i].pixels[p]) - int(b.images[i].pixels[p])));
  return worst;
}

struct Method {
  MeshDegrees mesh;
  bool patch_parallel = false;
  int patches = 0, warmup = 1;
};

std::string name(const Method& m) {
  return m.mesh.flags() + (m.patch_parallel ? " patch-parallel" : "") + " patches " + std::to_string(m.patches) +
         " warmup " + std::to_string(m.warmup);
}

EngineOptions options(const Method& m) {
  EngineOptions o;
  o.device = "cpu";
  o.mesh = m.mesh;
  o.threads_per_rank = 1;
  o.sources = tiny_flux();
  o.pipeline.stale.patches = m.patches;
  o.pipeline.stale.warmup_steps = m.warmup;
  o.pipeline.stale.patch_parallel = m.patch_parallel;
  return o;
}

// Every mesh of world ≤ 8 with pp 2..4 (the tiny model has 4 blocks) or with a sequence-parallel group run as
// patch parallel.
std::vector<Method> every_stale_mesh() {
  std::vector<Method> out;
  for (int pp = 1; pp <= 4; ++pp)
    for (int u = 1; u * pp <= 8; ++u)
      for (int r = 1; u * r * pp <= 8; ++r)
        for (int c = 1; c <= 2 && u * r * pp * c <= 8; ++c)
          for (int d = 1; u * r * pp * c * d <= 8; ++d) {
            const MeshDegrees m{.ulysses = u, .ring = r, .pp = pp, .cfg = c, .dp = d};
            if (pp > 1) out.push_back({m});
            else if (u * r > 1) out.push_back({m, true});
          }
  // Tensor parallel within the stages, or within the patch-parallel group's ranks (tiny-flux has 3 heads: tp 2
  // splits them {2, 1}, tp 4 leaves a rank with none).
  for (const MeshDegrees& m : {MeshDegrees{.tp = 2, .pp = 2}, MeshDegrees{.tp = 4, .pp = 2},
                               MeshDegrees{.tp = 2, .ulysses = 2, .pp = 2}})
    out.push_back({m});
  out.push_back({MeshDegrees{.tp = 2, .ring = 2}, true});
  return out;
}

TEST(StaleParallel, EveryMeshWithOnlyWarmupStepsGivesTheSerialImages) {
  for (Method m : every_stale_mesh()) {
    m.warmup = 2;  // = steps
    m.patches = m.mesh.pp > 1 ? 3 : 0;
    SCOPED_TRACE(name(m));
    auto engine = Engine::create(options(m));
    for (bool cfg : m.mesh.cfg == 2 ? std::vector<bool>{true} : std::vector<bool>{false, true}) {
      SCOPED_TRACE(cfg ? "true cfg" : "no cfg");
      std::atomic<int> reported{0};
      const FluxResult r = engine->generate(request(cfg), [&](const FluxProgress&) { ++reported; });
      EXPECT_LE(test::rel_l2(r.latents, serial(cfg).latents), kLatentTol);
      EXPECT_LE(max_pixel_diff(r, serial(cfg)), kPixelTol);
      EXPECT_EQ(reported, 2 * 2);  // images × steps
    }
  }
}

TEST(StaleParallel, PipeFusionEncodesThePromptsBesideTheLastStage) {
  FluxRequest req = request(false);
  req.prompt = "a red fox jumping over a sleeping dog in the deep snow";  // over 7 T5 tokens: a warning
  auto be = create_cpu_backend(1);
  const FluxResult one = FluxPipeline::load(*be, tiny_flux())->generate(req);
  ASSERT_FALSE(one.warnings.empty());
  for (const MeshDegrees& m : {MeshDegrees{.pp = 2}, MeshDegrees{.ulysses = 2, .pp = 3}, MeshDegrees{.ulysses = 2}}) {
    SCOPED_TRACE(m.flags());
    auto engine = Engine::create(options({m, false, 0, 2}));  // every step a warm-up step: exact
    const FluxResult r = engine->generate(req);
    EXPECT_LE(test::rel_l2(r.latents, one.latents), kLatentTol);
    EXPECT_EQ(r.warnings, one.warnings);  // the encoding rank's, whichever it is
    const DeviceMesh& mesh = engine->mesh();
    const int encoder = flux_prompt_encoder_rank(mesh);
    for (MeshDim d : kAllMeshDims)
      EXPECT_EQ(mesh.coord(encoder, d), d == MeshDim::kPp ? m.pp - 1 : 0) << mesh_dim_name(d);
    // Only the encoding rank holds text encoders: its weights beyond the transformer's are the largest.
    const std::vector<RankMemory> memory = engine->memory();
    const auto beyond = [&](int r) {
      return memory[size_t(r)].weight_bytes - memory[size_t(r)].transformer_weight_bytes;
    };
    for (int r = 0; r < int(memory.size()); ++r)
      if (r != encoder) EXPECT_LT(beyond(r), beyond(encoder)) << "rank " << r;
  }
}

// The approximate results of one method, computed alone (no other dimension).
FluxResult alone(const Method& m, bool cfg) {
  Method base = m;
  base.mesh = m.patch_parallel ? MeshDegrees{.ring = m.mesh.ulysses * m.mesh.ring} : MeshDegrees{.pp = m.mesh.pp};
  return Engine::create(options(base))->generate(request(cfg, 3));
}

TEST(StaleParallel, OtherDimensionsDoNotChangeTheApproximation) {
  const std::vector<Method> methods = {
      {{.ulysses = 2, .pp = 2}, false, 3, 1},           {{.ring = 2, .pp = 2, .cfg = 2}, false, 4, 1},
      {{.ulysses = 2, .ring = 2, .pp = 2}, false, 5, 1}, {{.pp = 3, .dp = 2}, false, 7, 1},
      {{.pp = 2, .cfg = 2, .dp = 2}, false, 2, 1},      {{.ulysses = 2, .ring = 2}, true, 0, 1},
      {{.ring = 3, .cfg = 2}, true, 0, 1},               {{.ulysses = 2, .ring = 2, .dp = 2}, true, 0, 1},
      {{.tp = 2, .pp = 2}, false, 3, 1},                {{.tp = 3, .ring = 2}, true, 0, 1},
  };
  for (const Method& m : methods) {
    SCOPED_TRACE(name(m));
    const bool cfg = true;
    const FluxResult got = Engine::create(options(m))->generate(request(cfg, 3));
    const FluxResult want = alone(m, cfg);
    EXPECT_LE(test::rel_l2(got.latents, want.latents), kLatentTol);
    // Approximate, but an approximation: near the exact image.
    const double err = test::rel_l2(got.latents, serial(cfg, 3).latents);
    EXPECT_GT(err, 0.0);
    EXPECT_LT(err, 0.5);
  }
}

TEST(StaleParallel, PatchCountsOneToSixteenRunToTheEnd) {
  // 64×64: 16 image tokens, so 1..16 bands, most of them uneven.
  FluxRequest req = request(false, 3);
  req.width = req.height = 64;
  req.batch_count = 1;
  auto be = create_cpu_backend(1);
  const FluxResult exact = FluxPipeline::load(*be, tiny_flux())->generate(req);
  for (int pp : {2, 3, 4})
    for (int patches = 1; patches <= 16; ++patches) {
      const Method m{{.pp = pp}, false, patches, 1};
      SCOPED_TRACE(name(m));
      const FluxResult r = Engine::create(options(m)).get()->generate(req);
      const double err = test::rel_l2(r.latents, exact.latents);
      // One band is the whole sequence: exact again.
      if (patches == 1) EXPECT_LE(err, kLatentTol);
      else EXPECT_LT(err, 0.5);
    }
}

TEST(StaleParallel, AFailingRankStopsEveryRankAndTheNextRequestRuns) {
  for (const Method& m : {Method{{.ulysses = 2, .pp = 2, .cfg = 2}, false, 3, 1},
                          Method{{.ulysses = 2, .ring = 2}, true, 0, 1}}) {
    SCOPED_TRACE(name(m));
    const int failing = m.mesh.product() - 1;
    std::atomic<int> armed{0};
    EngineOptions o = options(m);
    o.make_backend = [&](int rank) -> std::unique_ptr<Backend> {
      if (rank == failing) return std::make_unique<test::FailingBackend>(create_cpu_backend(1), &armed);
      return create_cpu_backend(1);
    };
    auto engine = Engine::create(o);
    for (int attempt = 0; attempt < 2; ++attempt) {
      armed = 3 + attempt;  // mid-step: after the warm-up step's first blocks
      try {
        engine->generate(request(true, 3));
        ADD_FAILURE() << "no error";
      } catch (const Error& e) {
        EXPECT_EQ(e.status().code(), StatusCode::kOutOfMemory) << e.what();
        EXPECT_NE(std::string(e.what()).find("injected failure in attention"), std::string::npos) << e.what();
      }
      const std::vector<Status> outcomes = engine->last_outcomes();
      for (int r = 0; r < int(outcomes.size()); ++r)
        EXPECT_EQ(outcomes[size_t(r)].code(), r == failing ? StatusCode::kOutOfMemory : StatusCode::kCancelled)
            << "rank " << r << ": " << outcomes[size_t(r)].to_string();
      armed = 0;
      EXPECT_LE(test::rel_l2(engine->generate(request(true, 3)).latents, alone(m, true).latents), kLatentTol);
    }
  }
}

void expect_refused(const Method& m, const std::string& part) {
  try {
    Engine::create(options(m))->generate(request(false, 3));
    ADD_FAILURE() << "no error for " << name(m);
  } catch (const Error& e) {
    EXPECT_EQ(e.status().code(), StatusCode::kInvalidArgument) << e.what();
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
  }
}

TEST(StaleParallel, ImpossibleCombinationsAreRefused) {
  expect_refused({{.pp = 5}}, "each stage needs at least one block");
  expect_refused({{.pp = 2}, false, 13, 1}, "has only 12 tokens");
  expect_refused({{.pp = 2}, false, 2, 0}, "--warmup-steps >= 1");
  expect_refused({{.ring = 2}, true, 0, 0}, "must be synchronous");
}

TEST(PipeFusionSchedule, EveryTransferHasBothSidesInOneTick) {
  for (int stages = 2; stages <= 8; ++stages)
    for (int patches = 1; patches <= 16; ++patches)
      for (int warmup : {1, 2}) {
        const PipeFusionSchedule plan(3, warmup, patches, stages);
        SCOPED_TRACE(std::to_string(stages) + " stages, " + std::to_string(patches) + " patches");
        const int items = int(plan.items().size());
        ASSERT_EQ(items, warmup + (3 - warmup) * patches);
        for (int s = 0; s < stages; ++s)
          for (int i = 0; i < items; ++i) {
            EXPECT_EQ(plan.item_at(s, plan.tick_of(s, i)), i);
            if (i > 0) EXPECT_GT(plan.tick_of(s, i), plan.tick_of(s, i - 1));
            // Input made two ticks before at least (sent in between).
            if (s > 0) EXPECT_GE(plan.tick_of(s, i), plan.tick_of(s - 1, i) + 2);
          }
        EXPECT_EQ(plan.ticks(), plan.tick_of(stages - 1, items - 1) + 2);
      }
}

TEST(PipeFusionStages, BalancedAndExplicitSplits) {
  EXPECT_EQ(balanced_stages({1, 1, 1, 1}, 2), (std::vector<int>{0, 2, 4}));
  EXPECT_EQ(balanced_stages({3, 1, 1, 1}, 2), (std::vector<int>{0, 1, 4}));
  EXPECT_EQ(balanced_stages({2, 2, 1, 1, 1, 1}, 3), (std::vector<int>{0, 1, 3, 6}));
  const std::vector<int> b = balanced_stages(std::vector<double>(57, 1.0), 4);
  EXPECT_EQ(b.front(), 0);
  EXPECT_EQ(b.back(), 57);
  for (size_t i = 1; i < b.size(); ++i) EXPECT_LE(b[i] - b[i - 1], 15);
  EXPECT_EQ(explicit_stages({10, 30}, 57, 3), (std::vector<int>{0, 10, 30, 57}));
  EXPECT_THROW(explicit_stages({30, 10}, 57, 3), Error);
  EXPECT_THROW(explicit_stages({10}, 57, 3), Error);
}

// PipeFusion's transfers are ring-shift batches (send to the next stage, receive from the one before, posted as
// one unit). xDiT's deadlocked above 64 MiB with sends and receives on one stream (#310): here a 3-rank ring
// shifts 68 MiB per rank, twice.
TEST(StaleParallel, MessagesAbove64MiBPassTheRing) {
  constexpr int64_t kFloats = 17 << 20;  // 68 MiB
  InProcessGroup group(3);
  const auto outcomes = run_ranks(group, [&](Communicator& ring) {
    const int r = ring.rank(), n = ring.size();
    Tensor send = Tensor::empty({kFloats}, DType::kF32, cpu_allocator());
    Tensor recv = test::poisoned_host({kFloats});
    for (int round = 0; round < 2; ++round) {
      std::fill_n(send.data_as<float>(), kFloats, float(r + 10 * round));
      ring.start({P2POp::send(send, (r + 1) % n), P2POp::recv(recv, (r + n - 1) % n)})->wait();
      const float want = float((r + n - 1) % n + 10 * round);
      const float* p = recv.data_as<float>();
      PD_CHECK(p[0] == want && p[kFloats / 2] == want && p[kFloats - 1] == want, "rank ", r, " got ", p[0]);
    }
  });
  EXPECT_TRUE(first_failure(outcomes).ok()) << first_failure(outcomes).to_string();
}

}  // namespace
}  // namespace paradit
