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

std::vector<MeshDegrees> every_mesh() {
  std::vector<MeshDegrees> meshes;
  for (int world = 1; world <= 8; ++world)
    for (int u = 1; u <= world; ++u)
      for (int r = 1; u * r <= world; ++r)
        for (int c = 1; c <= 2 && u * r * c <= world; ++c)
          if (world % (u * r * c) == 0)
            meshes.push_back({.ulysses = u, .ring = r, .cfg = c, .dp = world / (u * r * c)});
  return meshes;
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
  for (const MeshDegrees& m : every_mesh()) {
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

// A CPU backend that throws from attention on its `fail_at`-th call while armed: a rank failing mid-request,
// inside a collective's neighbourhood (its SP peers wait for its attention all-to-all / ring transfer).
class FailingBackend final : public Backend {
 public:
  FailingBackend(std::unique_ptr<Backend> inner, std::atomic<int>* armed) : in_(std::move(inner)), armed_(armed) {}

  std::string name() const override { return in_->name(); }
  Device device() const override { return in_->device(); }
  DType compute_dtype() const override { return in_->compute_dtype(); }
  Allocator& allocator() override { return in_->allocator(); }
  void synchronize() override { in_->synchronize(); }
  void copy(const Tensor& d, const Tensor& s) override { in_->copy(d, s); }
  void fill(const Tensor& d, float v) override { in_->fill(d, v); }
  void fill_random(const Tensor& d, uint64_t seed, float sd) override { in_->fill_random(d, seed, sd); }
  void linear(const Tensor& y, const Tensor& x, const Tensor& w, const Tensor& b, Epilogue ep) override {
    in_->linear(y, x, w, b, ep);
  }
  void linear_gated_residual(const Tensor& r, const Tensor& x, const Tensor& w, const Tensor& b,
                             const Tensor& g) override {
    in_->linear_gated_residual(r, x, w, b, g);
  }
  void layer_norm_modulate(const Tensor& y, const Tensor& x, const Tensor& sh, const Tensor& sc, float e) override {
    in_->layer_norm_modulate(y, x, sh, sc, e);
  }
  void rms_norm_rope(const Tensor& y, const Tensor& x, const Tensor& w, const Tensor& c, const Tensor& s,
                     float e) override {
    in_->rms_norm_rope(y, x, w, c, s, e);
  }
  void attention(const Tensor& o, const Tensor& l, const Tensor& q, const Tensor& k, const Tensor& v,
                 float scale) override {
    if (armed_->load() > 0 && armed_->fetch_sub(1) == 1) PD_THROW(kOutOfMemory, "injected failure in attention");
    in_->attention(o, l, q, k, v, scale);
  }
  void silu(const Tensor& y, const Tensor& x) override { in_->silu(y, x); }
  void gelu_tanh(const Tensor& y, const Tensor& x) override { in_->gelu_tanh(y, x); }
  void add(const Tensor& y, const Tensor& a, const Tensor& b) override { in_->add(y, a, b); }
  void gated_add(const Tensor& x, const Tensor& y, const Tensor& g) override { in_->gated_add(x, y, g); }
  void axpby(const Tensor& y, const Tensor& a, float al, const Tensor& b, float be) override {
    in_->axpby(y, a, al, b, be);
  }
  void mul(const Tensor& y, const Tensor& a, const Tensor& b) override { in_->mul(y, a, b); }
  void quick_gelu(const Tensor& y, const Tensor& x) override { in_->quick_gelu(y, x); }
  void embedding(const Tensor& o, const Tensor& t, const std::vector<int32_t>& ids) override {
    in_->embedding(o, t, ids);
  }
  void layer_norm(const Tensor& y, const Tensor& x, const Tensor& w, const Tensor& b, float e) override {
    in_->layer_norm(y, x, w, b, e);
  }
  void attention_biased(const Tensor& o, const Tensor& q, const Tensor& k, const Tensor& v, float scale,
                        const Tensor& bias, bool causal) override {
    in_->attention_biased(o, q, k, v, scale, bias, causal);
  }
  void conv2d(const Tensor& y, const Tensor& x, const Tensor& w, const Tensor& b, int pad) override {
    in_->conv2d(y, x, w, b, pad);
  }
  void group_norm(const Tensor& y, const Tensor& x, const Tensor& w, const Tensor& b, int groups, float e,
                  bool silu) override {
    in_->group_norm(y, x, w, b, groups, e, silu);
  }
  void upsample_nearest2x(const Tensor& y, const Tensor& x) override { in_->upsample_nearest2x(y, x); }
  void group_norm_sums(const Tensor& s, const Tensor& x, int groups, const Tensor& shift) override {
    in_->group_norm_sums(s, x, groups, shift);
  }
  void group_norm_apply(const Tensor& y, const Tensor& x, const Tensor& s, const Tensor& shift, double count,
                        const Tensor& w, const Tensor& b, int groups, float e, bool silu) override {
    in_->group_norm_apply(y, x, s, shift, count, w, b, groups, e, silu);
  }

 private:
  std::unique_ptr<Backend> in_;
  std::atomic<int>* armed_;  // > 0: calls left until the failing one
};

TEST_F(ParallelPipeline, AFailingRankStopsEveryRankAndTheNextRequestRuns) {
  constexpr int kFailing = 5;
  std::atomic<int> armed{0};
  EngineOptions o = cpu_ranks({.ulysses = 2, .ring = 2, .cfg = 2});
  o.make_backend = [&](int rank) -> std::unique_ptr<Backend> {
    if (rank == kFailing) return std::make_unique<FailingBackend>(create_cpu_backend(1), &armed);
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
}

}  // namespace
}  // namespace paradit
