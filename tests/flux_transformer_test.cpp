// The FLUX transformer on the CPU backend against diffusers: the tiny fixtures' outputs and intermediates,
// loaded from both checkpoint layouts; the host tables on their own; input validation.
#include <algorithm>
#include <cmath>
#include <map>
#include <string>

#include "../src/models/flux/flux_internal.h"
#include "paradit/io/flux_checkpoint.h"
#include "paradit/io/safetensors.h"
#include "paradit/models/flux_transformer.h"
#include "flux_fixture.h"
#include "test_util.h"

namespace paradit {
namespace {

constexpr double kTol = 1e-5;  // fp32 CPU vs diffusers

std::string fixture_dir(const std::string& fixture) { return test::fixtures_dir() + "/" + fixture; }



FluxCheckpoint open_layout(const std::string& fixture, const std::string& layout) {
  const std::string dir = fixture_dir(fixture);
  if (layout == "diffusers") return FluxCheckpoint::open(dir + "/transformer");
  return FluxCheckpoint::open(dir + "/" + fixture + "_bfl.safetensors", dir + "/transformer/config.json");
}

struct Case {
  std::string fixture, layout;
};

class FluxFixture : public ::testing::TestWithParam<Case> {};

TEST_P(FluxFixture, MatchesDiffusers) {
  const Case& c = GetParam();
  const SafetensorsFile io = SafetensorsFile::open(fixture_dir(c.fixture) + "/io.safetensors");
  const FluxCheckpoint ckpt = open_layout(c.fixture, c.layout);
  ASSERT_EQ(ckpt.layout(), c.layout);
  auto backend = create_cpu_backend();
  auto model = FluxTransformer::load(*backend, ckpt);

  size_t expected_bytes = 0;
  for (const auto& [name, shape] : ckpt.config().tensor_shapes()) expected_bytes += size_t(shape_numel(shape)) * 4;
  EXPECT_EQ(model->weight_bytes(), expected_bytes);

  const FluxInputs in = test::flux_fixture_inputs(*backend, io);
  const Tensor out = backend->download_f32(model->forward(in));
  EXPECT_LE(test::rel_l2(out, io.get("output")), kTol);

  std::map<std::string, Tensor> seen;
  const Tensor tapped = backend->download_f32(flux::forward_with_tap(
      *model, in, [&](const std::string& name, const Tensor& t) { seen[name] = backend->download_f32(t); }));
  EXPECT_EQ(test::max_abs_diff(tapped, out), 0.0) << "the tap changed the result";
  int compared = 0;
  for (const auto& [name, value] : seen) {
    if (!io.contains(name)) continue;
    EXPECT_LE(test::rel_l2(value, io.get(name)), kTol) << name;
    ++compared;
  }
  // x_embedder_out, context_embedder_out, temb, double0_{encoder,hidden}, single0_out, norm_out_out.
  EXPECT_EQ(compared, 7);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, FluxFixture,
                         ::testing::Values(Case{"flux_dev_tiny", "diffusers"}, Case{"flux_dev_tiny", "bfl"},
                                           Case{"flux_schnell_tiny", "diffusers"}, Case{"flux_schnell_tiny", "bfl"}),
                         [](const auto& info) { return info.param.fixture + "_" + info.param.layout; });

// The model keeps the RoPE tables of the last ids it saw; new ids (same count, other positions) must rebuild them.
TEST(FluxRope, CachedTablesFollowNewIds) {
  const SafetensorsFile io = SafetensorsFile::open(fixture_dir("flux_schnell_tiny") + "/io.safetensors");
  const FluxCheckpoint ckpt = open_layout("flux_schnell_tiny", "diffusers");
  auto backend = create_cpu_backend();
  auto reused = FluxTransformer::load(*backend, ckpt);
  FluxInputs in = test::flux_fixture_inputs(*backend, io);
  const Tensor first = backend->download_f32(reused->forward(in));
  EXPECT_LE(test::rel_l2(first, io.get("output")), kTol);

  // The 3×5 grid read as 5×3: the same number of tokens at other positions.
  Tensor moved = test::to_contiguous_f32(in.img_ids);
  float* p = moved.data_as<float>();
  for (int64_t i = 0; i < moved.size(0); ++i) {
    p[i * 3 + 1] = float(i / 3);
    p[i * 3 + 2] = float(i % 3);
  }
  in.img_ids = moved;
  const Tensor again = backend->download_f32(reused->forward(in));
  auto fresh = FluxTransformer::load(*backend, ckpt);
  const Tensor expected = backend->download_f32(fresh->forward(in));
  EXPECT_EQ(test::max_abs_diff(again, expected), 0.0);
  EXPECT_GT(test::rel_l2(again, first), 1e-3) << "moving the tokens should change the output";
}

TEST(FluxRope, MatchesDiffusersTables) {
  for (const char* fixture : {"flux_dev_tiny", "flux_schnell_tiny"}) {
    const SafetensorsFile io = SafetensorsFile::open(fixture_dir(fixture) + "/io.safetensors");
    const FluxCheckpoint ckpt = FluxCheckpoint::open(fixture_dir(fixture) + "/transformer");
    const flux::RopeTables r =
        flux::rope_tables(io.get("txt_ids"), io.get("img_ids"), ckpt.config().axes_dims_rope, 10000.0);
    // float64 angles cast to f32 on both sides: equal up to the last bit of cos/sin.
    EXPECT_LE(test::max_abs_diff(r.cos, io.get("rope_cos")), 1e-7) << fixture;
    EXPECT_LE(test::max_abs_diff(r.sin, io.get("rope_sin")), 1e-7) << fixture;
  }
}

TEST(FluxTimestep, CosineHalfFirst) {
  const std::vector<float> t = {730.0f, 3500.0f, 0.5f};
  const Tensor e = flux::timestep_embedding(t, 256);
  ASSERT_EQ(e.shape(), (Shape{3, 256}));
  for (size_t b = 0; b < t.size(); ++b) {
    for (int k = 0; k < 128; ++k) {
      // The float64 formula; torch's fp32 exponent (−ln 10⁴ rounded to f32) moves f_k by up to ~6e-7 relative.
      const double arg = double(t[b]) * std::exp(-std::log(10000.0) * k / 128.0);
      const double tol = 1e-6 + std::fabs(arg) * 1e-6;
      EXPECT_NEAR(e.data_as<float>()[b * 256 + k], std::cos(arg), tol) << b << " " << k;
      EXPECT_NEAR(e.data_as<float>()[b * 256 + 128 + k], std::sin(arg), tol) << b << " " << k;
    }
  }
}

TEST(FluxInputsCheck, RefusesMismatchedInputs) {
  const SafetensorsFile io = SafetensorsFile::open(fixture_dir("flux_dev_tiny") + "/io.safetensors");
  auto backend = create_cpu_backend();
  auto model = FluxTransformer::load(*backend, FluxCheckpoint::open(fixture_dir("flux_dev_tiny") + "/transformer"));
  const FluxInputs good = test::flux_fixture_inputs(*backend, io);
  const auto expect_invalid = [&](FluxInputs in, const char* what) {
    try {
      model->forward(in);
      ADD_FAILURE() << what << ": no error";
    } catch (const Error& e) {
      EXPECT_EQ(e.status().code(), StatusCode::kInvalidArgument) << what << ": " << e.what();
    }
  };
  FluxInputs in = good;
  in.guidance.clear();
  expect_invalid(in, "dev model without guidance");
  in = good;
  in.timestep = {0.5f, 0.5f};
  expect_invalid(in, "two timesteps for a batch of one");
  in = good;
  in.img_ids = io.get("img_ids").slice(0, 0, 15);
  expect_invalid(in, "img_ids rows != image tokens");
  in = good;
  in.pooled_projections = backend->empty({1, 23});
  expect_invalid(in, "pooled width");
  in = good;
  in.txt_ids = Tensor::empty({8, 2}, DType::kF32, cpu_allocator());
  expect_invalid(in, "txt_ids of width 2");
}

// Modulations planned for several conditionings at once (FluxTransformer::plan_conditionings) give each forward
// what it would compute itself; a forward naming a plan entry of another timestep is refused, and after
// clear_plan() the index is ignored.
TEST(FluxPlan, PlannedConditioningsGiveTheSameForward) {
  const SafetensorsFile io = SafetensorsFile::open(fixture_dir("flux_dev_tiny") + "/io.safetensors");
  auto backend = create_cpu_backend();
  auto model = FluxTransformer::load(*backend, FluxCheckpoint::open(fixture_dir("flux_dev_tiny") + "/transformer"));
  FluxInputs in = test::flux_fixture_inputs(*backend, io);
  const std::vector<float> steps = {0.9f, in.timestep[0], 0.25f};
  const Tensor other_pooled = backend->upload(test::random_host(in.pooled_projections.shape(), 5), DType::kF32);
  std::vector<FluxConditioning> plan;
  for (float t : steps) plan.push_back({other_pooled, {t}, in.guidance});  // entries 0, 2, 4: another prompt
  plan.insert(plan.begin() + 2, {in.pooled_projections, in.timestep, in.guidance});  // entry 2: this forward's
  for (float t : {0.9f, 0.25f}) plan.push_back({in.pooled_projections, {t}, in.guidance});
  model->plan_conditionings(plan, nullptr);

  const Tensor own = backend->download_f32(model->forward(in));  // planned = −1: computes its own
  EXPECT_LE(test::rel_l2(own, io.get("output")), kTol);
  in.planned = 2;
  const Tensor planned = backend->download_f32(model->forward(in));
  EXPECT_LE(test::rel_l2(planned, own), 1e-6);
  in.planned = 4;  // this prompt at t = 0.9: not this forward's timestep
  EXPECT_EQ(test::code_of([&] { model->forward(in); }), StatusCode::kInvalidArgument);
  FluxInputs later = in;
  later.timestep = {0.25f};
  later.planned = 5;
  const Tensor at_quarter = backend->download_f32(model->forward(later));
  later.planned = -1;
  EXPECT_LE(test::rel_l2(at_quarter, backend->download_f32(model->forward(later))), 1e-6);
  EXPECT_GT(test::rel_l2(at_quarter, own), 1e-3) << "another timestep should change the output";
  model->clear_plan();
  in.planned = 4;
  EXPECT_LE(test::rel_l2(backend->download_f32(model->forward(in)), own), 0.0);
}

// Random weights (benchmarks, CPU-vs-GPU tests): deterministic in the seed, finite, of unit-ish scale.
TEST(FluxRandom, DeterministicAndFinite) {
  auto backend = create_cpu_backend();
  FluxConfig c = FluxConfig::dev();
  c.num_layers = c.num_single_layers = 1;
  c.num_attention_heads = 2;
  c.joint_attention_dim = 32;
  c.pooled_projection_dim = 16;
  const SafetensorsFile io = SafetensorsFile::open(fixture_dir("flux_dev_tiny") + "/io.safetensors");
  FluxInputs in;
  in.hidden_states = backend->upload(io.get("hidden_states"), DType::kF32);
  in.encoder_hidden_states = test::random_host({1, 8, 32}, 5);
  in.pooled_projections = test::random_host({1, 16}, 6);
  in.timestep = {0.5f};
  in.guidance = {3.5f};
  in.img_ids = io.get("img_ids");
  in.txt_ids = io.get("txt_ids");

  const auto run = [&](uint64_t seed) {
    auto model = FluxTransformer::random(*backend, c, seed);
    size_t bytes = 0;
    for (const auto& [name, shape] : c.tensor_shapes()) bytes += size_t(shape_numel(shape)) * 4;
    EXPECT_EQ(model->weight_bytes(), bytes);
    return backend->download_f32(model->forward(in));
  };
  const Tensor a = run(1), b = run(1), other = run(2);
  EXPECT_EQ(test::max_abs_diff(a, b), 0.0);
  EXPECT_GT(test::rel_l2(other, a), 0.1);
  const Tensor zero = Tensor::empty(a.shape(), DType::kF32, cpu_allocator());
  std::fill_n(zero.data_as<float>(), zero.numel(), 0.0f);
  const double norm = test::rel_l2(a, zero) / std::sqrt(double(a.numel()));  // RMS of the output
  EXPECT_GT(norm, 0.1);
  EXPECT_LT(norm, 10.0);
}

TEST(FluxConfigCheck, RefusesRopeAxesNotSummingToHeadDim) {
  auto backend = create_cpu_backend();
  FluxConfig c = FluxConfig::schnell();
  c.num_layers = c.num_single_layers = 0;
  c.num_attention_heads = 1;
  c.attention_head_dim = 64;  // axes [16, 56, 56] sum to 128
  EXPECT_THROW(FluxTransformer::random(*backend, c, 1), Error);
}

}  // namespace
}  // namespace paradit
