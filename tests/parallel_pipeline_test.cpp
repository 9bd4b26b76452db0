// The Engine on CPU ranks (threads, in-process communicators, one 1-thread CPU backend each) against the
// single-device FluxPipeline, with models/tiny-flux: every mesh of world ≤ 8 (ulysses × ring × cfg × dp) gives the
// same latents (1e-5 relative) and images (1/255) on a square and a non-square size, with and without true CFG and
// with batches the data-parallel degree does not divide. Then failures: a rank that throws mid-request stops every
// rank with its error and the engine serves the next request; impossible meshes are refused saying what works.
#include <algorithm>
#include <atomic>
#include <map>
#include <string>
#include <vector>

#include "paradit/pipeline/flux_pipeline.h"
#include "paradit/runtime/engine.h"
#include "paradit/runtime/mesh_plan.h"
#include "failing_backend.h"
#include "test_util.h"

namespace paradit {
namespace {

constexpr double kLatentTol = 1e-5;  // parallel vs serial in fp32 (DESIGN.md)
constexpr int kPixelTol = 1;         // 8-bit levels

FluxPipelineSources tiny_flux() {
  FluxPipelineSources s;
  s.model_dir = test::fixtures_dir() + "/../../models/tiny-flux";
  return s;
}

// Square with true CFG and 3 images; non-square with 2 images, with and without true CFG.
enum class Kind { kSquareCfg, kWideCfg, kWide };

FluxRequest request(Kind kind) {
  FluxRequest r;
  r.prompt = "a red fox";
  r.steps = 2;
  r.max_sequence_length = 7;  // T = 7: text rows do not divide most degrees either
  r.seed = 77;
  r.width = kind == Kind::kSquareCfg ? 48 : 64;
  r.height = kind == Kind::kSquareCfg ? 48 : 32;
  r.batch_count = kind == Kind::kSquareCfg ? 3 : 2;
  if (kind != Kind::kWide) {
    r.negative_prompt = "blurry";
    r.true_cfg_scale = 2.5f;
  }
  return r;
}

const char* kind_name(Kind k) {
  return k == Kind::kSquareCfg ? "48x48 cfg" : k == Kind::kWideCfg ? "64x32 cfg" : "64x32";
}

int max_pixel_diff(const std::vector<Rgb8Image>& a, const std::vector<Rgb8Image>& b) {
  EXPECT_EQ(a.size(), b.size());
  int worst = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    EXPECT_EQ(a[i].pixels.size(), b[i].pixels.size());
    for (size_t p = 0; p < std::min(a[i].pixels.size(), b[i].pixels.size()); ++p)
      worst = std::max(worst, std::abs(int(a[i].pixels[p]) - int(b[i].pixels[p])));
  }
  return worst;
}

EngineOptions cpu_ranks(const MeshDegrees& mesh) {
  EngineOptions o;
  o.device = "cpu";
  o.mesh = mesh;
  o.threads_per_rank = 1;
  o.sources = tiny_flux();
  return o;
}

void expect_same(const FluxResult& got, const FluxResult& want) {
  EXPECT_LE(test::rel_l2(got.latents, want.latents), kLatentTol);
  EXPECT_LE(max_pixel_diff(got.images, want.images), kPixelTol);
  EXPECT_EQ(got.seeds, want.seeds);
  EXPECT_EQ(got.steps, want.steps);
  EXPECT_EQ(got.timings.step_s.size(), want.timings.step_s.size());
}

class ParallelPipeline : public ::testing::Test {
 protected:
  // The single-device pipeline's results, computed once.
  static const FluxResult& reference(Kind kind) {
    static std::map<Kind, FluxResult> cache;
    auto it = cache.find(kind);
    if (it == cache.end()) {
      auto be = create_cpu_backend(1);
      auto p = FluxPipeline::load(*be, tiny_flux());
      it = cache.emplace(kind, p->generate(request(kind))).first;
    }
    return it->second;
  }
};

TEST_F(ParallelPipeline, EveryMeshGivesTheSingleDeviceImages) {
  for (const MeshDegrees& m : test::every_sp_cfg_dp_mesh()) {
    SCOPED_TRACE(m.flags() + (m.cfg == 2 ? " (cfg 2)" : ""));
    auto engine = Engine::create(cpu_ranks(m));
    EXPECT_EQ(engine->mesh().world(), m.product());
    // A CFG-parallel mesh serves true-CFG requests only.
    for (Kind k : m.cfg == 2 ? std::vector<Kind>{Kind::kSquareCfg, Kind::kWideCfg}
                             : std::vector<Kind>{Kind::kSquareCfg, Kind::kWide}) {
      SCOPED_TRACE(kind_name(k));
      std::atomic<int> reported{0};
      const FluxResult r = engine->generate(request(k), [&](const FluxProgress&) { ++reported; });
      expect_same(r, reference(k));
      EXPECT_EQ(reported, request(k).batch_count * request(k).steps);
    }
  }
}

TEST_F(ParallelPipeline, TensorParallelMeshesGiveTheSingleDeviceImages) {
  // tiny-flux has 3 heads: tp 2 splits them {2, 1}, tp 5 leaves two ranks with none; with Ulysses, Ring, CFG
  // parallel and data parallel around it.
  size_t whole = 0;
  {
    auto be = create_cpu_backend(1);
    whole = FluxPipeline::load(*be, tiny_flux())->transformer_weight_bytes();
  }
  for (const MeshDegrees& m : {MeshDegrees{.tp = 2}, MeshDegrees{.tp = 5}, MeshDegrees{.tp = 2, .ulysses = 2},
                               MeshDegrees{.tp = 2, .ring = 2, .cfg = 2}, MeshDegrees{.tp = 3, .dp = 2}}) {
    SCOPED_TRACE(m.flags());
    auto engine = Engine::create(cpu_ranks(m));
    const Kind k = m.cfg == 2 ? Kind::kWideCfg : Kind::kSquareCfg;
    expect_same(engine->generate(request(k)), reference(k));
    // Each rank holds its share of the transformer; the shares add up to more than the whole only by what every
    // rank holds whole (embedders, norms, the final projection).
    const std::vector<RankMemory> memory = engine->memory();
    ASSERT_EQ(memory.size(), size_t(m.product()));
    size_t one_tp_group = 0;
    for (int r = 0; r < m.tp; ++r) {
      EXPECT_LT(memory[size_t(r)].transformer_weight_bytes, whole) << "rank " << r;
      EXPECT_GE(memory[size_t(r)].weight_bytes, memory[size_t(r)].transformer_weight_bytes);
      EXPECT_FALSE(memory[size_t(r)].peak_bytes.has_value());  // CPU ranks cannot tell
      one_tp_group += memory[size_t(r)].transformer_weight_bytes;
    }
    EXPECT_GT(one_tp_group, whole);
  }
}

// A request may carry token ids instead of text: the same ids give the same images, on one rank or several, and
// through EngineOptions::make_pipeline. A pipeline without tokenizers (random weights) refuses text and takes ids.
TEST_F(ParallelPipeline, TokenIdsInPlaceOfTextGiveTheSameImages) {
  auto be = create_cpu_backend(1);
  auto pipe = FluxPipeline::load(*be, tiny_flux());
  FluxRequest req = request(Kind::kWideCfg);
  const FluxPromptEmbeds pos = pipe->encode_prompt(req.prompt, req.max_sequence_length, nullptr);
  const FluxPromptEmbeds neg = pipe->encode_prompt(*req.negative_prompt, req.max_sequence_length, nullptr);
  req.prompt_tokens = FluxPromptTokens{pos.clip_tokens.ids, pos.t5_tokens.ids};
  req.negative_prompt_tokens = FluxPromptTokens{neg.clip_tokens.ids, neg.t5_tokens.ids};
  req.prompt = "not read";
  req.negative_prompt = "not read either";
  expect_same(pipe->generate(req), reference(Kind::kWideCfg));

  EngineOptions o = cpu_ranks({.ulysses = 2, .cfg = 2});
  std::atomic<int> loads = 0;  // the ranks load on their own threads
  o.make_pipeline = [&](Backend& backend, int, const FluxPipelineOptions& po) {
    ++loads;
    return FluxPipeline::load(backend, tiny_flux(), po);
  };
  auto engine = Engine::create(o);
  EXPECT_EQ(loads.load(), 4);
  expect_same(engine->generate(req), reference(Kind::kWideCfg));

  auto random = FluxPipeline::random(*be, FluxNetworkConfigs::tiny(), 1);
  FluxRequest text = request(Kind::kWide);
  EXPECT_THROW(random->generate(text), Error);
  text.prompt_tokens = FluxPromptTokens{pos.clip_tokens.ids, pos.t5_tokens.ids};
  const FluxResult r = random->generate(text);
  ASSERT_EQ(r.images.size(), 2u);
  EXPECT_EQ(r.images[0].width, 64);
  // The T5 ids set the sequence length: a different max_sequence_length is refused.
  text.max_sequence_length = 9;
  EXPECT_THROW(random->generate(text), Error);
}

TEST_F(ParallelPipeline, AFailingRankStopsEveryRankAndTheNextRequestRuns) {
  constexpr int kFailing = 5;
  std::atomic<int> armed{0};
  EngineOptions o = cpu_ranks({.ulysses = 2, .ring = 2, .cfg = 2});
  o.make_backend = [&](int rank) -> std::unique_ptr<Backend> {
    if (rank == kFailing) return std::make_unique<test::FailingBackend>(create_cpu_backend(1), &armed);
    return create_cpu_backend(1);
  };
  auto engine = Engine::create(o);
  const FluxRequest req = request(Kind::kSquareCfg);
  // Rank 5 (cfg 1: the negative branch) makes 8 attention calls per forward (4 blocks × 2 ring blocks): its 7th
  // is in the first step, while its Ulysses and Ring peers wait for its transfers.
  for (int attempt = 0; attempt < 2; ++attempt) {
    armed = 7;
    try {
      engine->generate(req);
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      EXPECT_EQ(e.status().code(), StatusCode::kOutOfMemory) << e.what();
      EXPECT_NE(std::string(e.what()).find("rank 5 of 8"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("injected failure in attention"), std::string::npos) << e.what();
    }
    const std::vector<Status> outcomes = engine->last_outcomes();
    ASSERT_EQ(outcomes.size(), 8u);
    for (int r = 0; r < 8; ++r) {
      const Status& s = outcomes[size_t(r)];
      if (r == kFailing) {
        EXPECT_EQ(s.code(), StatusCode::kOutOfMemory) << s.to_string();
      } else {
        // Every other rank was stopped by the failure, and says whose it was.
        EXPECT_EQ(s.code(), StatusCode::kCancelled) << "rank " << r << ": " << s.to_string();
        EXPECT_NE(s.message().find("injected failure"), std::string::npos) << "rank " << r << ": " << s.to_string();
      }
    }
    // The engine has new communicators: the next request runs, and gives the single-device images.
    expect_same(engine->generate(req), reference(Kind::kSquareCfg));
  }
}

TEST_F(ParallelPipeline, AFailingLoadNamesTheRank) {
  EngineOptions o = cpu_ranks({.ring = 3});
  o.make_backend = [](int rank) -> std::unique_ptr<Backend> {
    if (rank == 2) PD_THROW(kUnavailable, "rank 2's device is gone");
    return create_cpu_backend(1);
  };
  try {
    Engine::create(o);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.status().code(), StatusCode::kUnavailable);
    EXPECT_NE(std::string(e.what()).find("rank 2 of 3 (ring 2)"), std::string::npos) << e.what();
  }
}

// Runs fn, which must throw Error(code) with every one of `parts` in its message.
void expect_error(const std::function<void()>& fn, StatusCode code, const std::vector<std::string>& parts) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected " << status_code_name(code);
  } catch (const Error& e) {
    EXPECT_EQ(e.status().code(), code) << e.what();
    for (const auto& p : parts)
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << p << " not in: " << e.what();
  }
}

TEST_F(ParallelPipeline, CfgParallelWithoutTrueCfgIsRefusedAndTheEngineGoesOn) {
  auto engine = Engine::create(cpu_ranks({.cfg = 2}));
  expect_error([&] { engine->generate(request(Kind::kWide)); }, StatusCode::kInvalidArgument,
               {"needs true CFG", "--dp 2"});
  expect_same(engine->generate(request(Kind::kWideCfg)), reference(Kind::kWideCfg));
}

TEST_F(ParallelPipeline, ABadRequestIsRefusedOnceAndTheEngineGoesOn) {
  auto engine = Engine::create(cpu_ranks({.ulysses = 2}));
  FluxRequest bad = request(Kind::kWide);
  bad.width = 100;
  // Every rank refuses the same way: the message is the refusal itself, not a rank's.
  expect_error([&] { engine->generate(bad); }, StatusCode::kInvalidArgument, {"image width 100"});
  expect_same(engine->generate(request(Kind::kWide)), reference(Kind::kWide));
}

TEST(MeshPlan, ImpossibleMeshesAreRefusedWithWhatWorks) {
  // The degrees given must multiply to the rank count.
  expect_error([] { plan_mesh({.ulysses = 3, .ranks = 4}, 24, false); }, StatusCode::kInvalidArgument,
               {"ulysses 3 = 3 ranks but the world is 4", "try", "--ulysses 4"});
  // CFG parallel takes 2 ranks per group: 3 ranks cannot hold it.
  expect_error([] { plan_mesh({.cfg_parallel = true, .ranks = 3}, 24, true); }, StatusCode::kInvalidArgument,
               {"but the world is 3", "try"});
  expect_error([] { plan_mesh({.dp = 0}, 24, false); }, StatusCode::kInvalidArgument, {"must be >= 1"});
}

TEST(MeshPlan, MeshesTheDevicesCannotHoldAreRefused) {
  const auto on = [](const std::string& device, const MeshDegrees& mesh) {
    EngineOptions o = cpu_ranks(mesh);
    o.device = device;
    return o;
  };
  // More GPUs than the machine has (none in a CPU build).
  if (cuda_device_count() < 4)
    expect_error([&] { Engine::create(on("cuda", {.ulysses = 2, .ring = 2})); }, StatusCode::kInvalidArgument,
                 {"needs 4 GPUs", "--device cpu"});
  expect_error([&] { Engine::create(on("cuda:1", {.ring = 2})); }, StatusCode::kInvalidArgument,
               {"names one GPU", "--device cuda"});
  expect_error([&] { Engine::create(on("tpu", {.ring = 2})); }, StatusCode::kInvalidArgument, {"bad device 'tpu'"});
}

TEST(MeshPlan, ARankCountAlonePicksTheMesh) {
  // 24 heads: Ulysses over everything that divides them.
  EXPECT_EQ(plan_mesh({.ranks = 8}, 24, false).degrees(), (MeshDegrees{.ulysses = 8}));
  // True CFG takes the cheap split first.
  EXPECT_EQ(plan_mesh({.ranks = 8}, 24, true).degrees(), (MeshDegrees{.ulysses = 4, .cfg = 2}));
  // 3 heads: Ulysses 3, the rest Ring.
  EXPECT_EQ(plan_mesh({.ranks = 6}, 3, false).degrees(), (MeshDegrees{.ulysses = 3, .ring = 2}));
  EXPECT_EQ(plan_mesh({.ranks = 5}, 24, true).degrees(), (MeshDegrees{.ring = 5}));
  EXPECT_EQ(plan_mesh({.dp = 2, .ranks = 8}, 24, false).degrees(), (MeshDegrees{.ulysses = 4, .dp = 2}));
  // Degrees alone: their product.
  EXPECT_EQ(plan_mesh({.ulysses = 2, .ring = 3, .cfg_parallel = true}, 24, true).world(), 12);
  EXPECT_EQ(plan_mesh({}, 24, true).world(), 1);
  // --tp is kept as given; Ulysses splits each tp rank's share of the heads: 12 of 24 for tp 2, at least 4 for
  // tp 5 (5, 5, 5, 5, 4).
  EXPECT_EQ(plan_mesh({.tp = 2, .ranks = 8}, 24, false).degrees(), (MeshDegrees{.tp = 2, .ulysses = 4}));
  EXPECT_EQ(plan_mesh({.tp = 2, .ranks = 8}, 24, true).degrees(), (MeshDegrees{.tp = 2, .ulysses = 2, .cfg = 2}));
  EXPECT_EQ(plan_mesh({.tp = 5, .ranks = 10}, 24, false).degrees(), (MeshDegrees{.tp = 5, .ulysses = 2}));
  EXPECT_EQ(plan_mesh({.tp = 4}, 24, false).world(), 4);
  expect_error([] { plan_mesh({.tp = 3, .ranks = 8}, 24, false); }, StatusCode::kInvalidArgument, {"try"});
}

}  // namespace
}  // namespace paradit
