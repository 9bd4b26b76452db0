// FlowMatchEulerScheduler against diffusers: every schedule in tests/fixtures/scheduler/scheduler.json must match
// bit for bit (made by tools/make_scheduler_fixtures.py), plus config parsing and its refusals.
#include "paradit/sched/flow_match_euler.h"

#include <unistd.h>

#include <bit>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <nlohmann/json.hpp>
#include <sstream>

#include "paradit/core/status.h"
#include "paradit/pipeline/latents.h"
#include "scheduler_fixture.h"
#include "test_util.h"

namespace paradit {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::vector<float> floats(const std::string& hex) {
  std::vector<float> out;
  std::istringstream is(hex);
  std::string word;
  while (is >> word) out.push_back(std::bit_cast<float>(uint32_t(std::stoul(word, nullptr, 16))));
  return out;
}

SigmaSource source_of(const json& cfg) {
  return cfg["pipeline"] == "FluxPipeline" ? SigmaSource::kFluxPipeline : SigmaSource::kScheduler;
}

// Image tokens as each pipeline counts them: FLUX the packed grid, SD3 the latent grid over patch size 2.
int64_t image_seq_len(SigmaSource src, int64_t width, int64_t height) {
  if (src == SigmaSource::kFluxPipeline) return flux_packed_latent_shape(1, height, width)[1];
  return (height / 8 / 2) * (width / 8 / 2);
}

// Compares bit patterns; reports the first difference with both values.
void expect_same(const std::vector<float>& got, const std::vector<float>& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i)
    if (std::bit_cast<uint32_t>(got[i]) != std::bit_cast<uint32_t>(want[i])) {
      ADD_FAILURE() << what << ": element " << i << " is " << std::setprecision(9) << got[i] << " (0x" << std::hex
                    << std::bit_cast<uint32_t>(got[i]) << "), diffusers " << std::dec << want[i] << " (0x"
                    << std::hex << std::bit_cast<uint32_t>(want[i]) << std::dec << "), |diff| "
                    << std::fabs(double(got[i]) - double(want[i]));
      return;
    }
}

TEST(Scheduler, MatchesDiffusersBitForBit) {
  const json& doc = test::scheduler_fixture();
  int checked = 0;
  for (const json& c : doc["cases"]) {
    const std::string name = c["config"];
    const json& cfg = doc["configs"][name];
    const FlowMatchEulerConfig config = FlowMatchEulerConfig::parse(cfg["scheduler_config"].dump(), name);
    const SigmaSource src = source_of(cfg);
    const int steps = c["steps"];
    const auto want_sigmas = floats(c["sigmas"]), want_timesteps = floats(c["timesteps"]);

    // A size-independent (static) schedule was verified identical at every size: check ours at every size too.
    std::vector<std::pair<int64_t, int64_t>> sizes;
    if (c["width"].is_null())
      for (const json& s : doc["sizes"]) sizes.emplace_back(s[0].get<int64_t>(), s[1].get<int64_t>());
    else
      sizes.emplace_back(c["width"].get<int64_t>(), c["height"].get<int64_t>());

    for (const auto& [w, h] : sizes) {
      const std::string what = name + " " + std::to_string(steps) + " steps " + std::to_string(w) + "x" +
                               std::to_string(h);
      const int64_t n = image_seq_len(src, w, h);
      FlowMatchEulerScheduler sched(config, src);
      if (!c["image_seq_len"].is_null()) {
        EXPECT_EQ(n, c["image_seq_len"].get<int64_t>()) << what;
        if (!c["mu"].is_null()) EXPECT_EQ(sched.mu(n), c["mu"].get<double>()) << what;  // exact float64
      }
      sched.set_timesteps(steps, n);
      ASSERT_EQ(sched.num_steps(), steps) << what;
      expect_same(sched.sigmas(), want_sigmas, what + " sigmas");
      expect_same(sched.timesteps(), want_timesteps, what + " timesteps");
      ++checked;
    }
  }
  // 50 steps × 7 sizes for dev, schnell and SD3; 4 step counts × 7 sizes for each variant.
  EXPECT_EQ(checked, 3 * 50 * 7 + 2 * 4 * 7);
}

TEST(Scheduler, PublishedDefaultsEqualTheFixtureConfigs) {
  const json& configs = test::scheduler_fixture()["configs"];
  auto same = [](const FlowMatchEulerConfig& a, const FlowMatchEulerConfig& b) {
    return a.num_train_timesteps == b.num_train_timesteps && a.shift == b.shift &&
           a.use_dynamic_shifting == b.use_dynamic_shifting && a.base_shift == b.base_shift &&
           a.max_shift == b.max_shift && a.base_image_seq_len == b.base_image_seq_len &&
           a.max_image_seq_len == b.max_image_seq_len && a.time_shift_type == b.time_shift_type &&
           a.shift_terminal == b.shift_terminal;
  };
  EXPECT_TRUE(same(FlowMatchEulerConfig::flux_dev(),
                   FlowMatchEulerConfig::parse(configs["flux_dev"]["scheduler_config"].dump(), "dev")));
  EXPECT_TRUE(same(FlowMatchEulerConfig::flux_schnell(),
                   FlowMatchEulerConfig::parse(configs["flux_schnell"]["scheduler_config"].dump(), "schnell")));
  EXPECT_TRUE(same(FlowMatchEulerConfig::sd3(), FlowMatchEulerConfig::parse(configs["sd3"]["scheduler_config"].dump(),
                                                                             "sd3")));
}

// The worked values of the reference notes (S = 28), as a readable cross-check of the fixture.
TEST(Scheduler, WorkedValuesFluxDev) {
  FlowMatchEulerScheduler s(FlowMatchEulerConfig::flux_dev());
  EXPECT_NEAR(s.mu(1024), 0.63, 1e-12);
  EXPECT_NEAR(s.mu(4096), 1.15, 1e-12);
  EXPECT_NEAR(s.mu(16384), 3.23, 1e-12);  // not clamped
  s.set_timesteps(28, 4096);
  ASSERT_EQ(s.sigmas().size(), 29u);
  EXPECT_EQ(s.sigma(0), 1.0f);
  EXPECT_NEAR(s.sigma(1), 0.9884, 5e-5);
  EXPECT_NEAR(s.sigma(2), 0.9762, 5e-5);
  EXPECT_NEAR(s.sigma(27), 0.1047, 5e-5);
  EXPECT_EQ(s.sigma(28), 0.0f);
  EXPECT_EQ(s.timestep(0), 1000.0f);
  s.set_timesteps(28, 1024);
  EXPECT_NEAR(s.sigma(27), 0.0650, 5e-5);
  s.set_timesteps(28, 16384);
  EXPECT_NEAR(s.sigma(27), 0.48355, 5e-5);  // the notes round it to 0.4836; diffusers gives 0.4835467

  FlowMatchEulerScheduler sd3(FlowMatchEulerConfig::sd3(), SigmaSource::kScheduler);
  sd3.set_timesteps(28, 4096);
  EXPECT_NEAR(sd3.sigma(27), 0.00893, 5e-6);
}

TEST(Scheduler, StepUsesTheSigmaDifference) {
  FlowMatchEulerScheduler s(FlowMatchEulerConfig::flux_dev());
  s.set_timesteps(4, 4096);
  float total = 0;
  for (int i = 0; i < s.num_steps(); ++i) {
    EXPECT_EQ(s.dt(i), s.sigma(i + 1) - s.sigma(i));
    EXPECT_LT(s.dt(i), 0.0f);
    total += s.dt(i);
  }
  EXPECT_NEAR(total, -1.0f, 1e-6);
  std::vector<float> x = {1.0f, -2.0f, 0.5f}, v = {0.25f, 3.0f, -1.0f};
  std::vector<float> want = x;
  for (size_t k = 0; k < x.size(); ++k) want[k] = x[k] + s.dt(1) * v[k];
  s.step_host(x.data(), v.data(), x.size(), 1);
  EXPECT_EQ(x, want);
  EXPECT_THROW(s.dt(4), Error);  // only steps 0..3 exist
  EXPECT_THROW(s.timestep(-1), Error);
}

TEST(Scheduler, RejectsBadArguments) {
  FlowMatchEulerScheduler s(FlowMatchEulerConfig::flux_dev());
  EXPECT_EQ(capture([&] { s.set_timesteps(0, 4096); }).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(capture([&] { s.set_timesteps(28, 0); }).code(), StatusCode::kInvalidArgument);
  // diffusers gives 0/0 = NaN for one step with shift_terminal; paradit refuses.
  FlowMatchEulerConfig c = FlowMatchEulerConfig::flux_dev();
  c.shift_terminal = 0.1;
  FlowMatchEulerScheduler t(c);
  const Status st = capture([&] { t.set_timesteps(1, 4096); });
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("non-finite"), std::string::npos) << st.message();
}

void expect_parse_error(const std::string& text, StatusCode code, const std::string& part) {
  const Status st = capture([&] { FlowMatchEulerConfig::parse(text, "cfg.json"); });
  ASSERT_FALSE(st.ok()) << text;
  EXPECT_EQ(st.code(), code) << st.to_string();
  EXPECT_NE(st.message().find(part), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("cfg.json"), std::string::npos) << st.message();
}

TEST(SchedulerConfig, RefusesWhatItDoesNotImplement) {
  expect_parse_error(R"({"_class_name": "EulerDiscreteScheduler"})", StatusCode::kUnimplemented,
                     "EulerDiscreteScheduler");
  expect_parse_error(R"({"use_karras_sigmas": true})", StatusCode::kUnimplemented, "use_karras_sigmas");
  expect_parse_error(R"({"invert_sigmas": true})", StatusCode::kUnimplemented, "invert_sigmas");
  expect_parse_error(R"({"stochastic_sampling": true})", StatusCode::kUnimplemented, "stochastic_sampling");
  expect_parse_error(R"({"use_beta_sigmas": true})", StatusCode::kUnimplemented, "use_beta_sigmas");
  expect_parse_error(R"({"some_new_option": 2.5})", StatusCode::kUnimplemented, "some_new_option");
  expect_parse_error(R"({"shift": "3"})", StatusCode::kCorruptData, "shift");
  expect_parse_error(R"({"shift": -1})", StatusCode::kCorruptData, "shift");
  expect_parse_error(R"({"num_train_timesteps": 0})", StatusCode::kCorruptData, "num_train_timesteps");
  expect_parse_error(R"({"time_shift_type": "cosine"})", StatusCode::kCorruptData, "time_shift_type");
  expect_parse_error(R"({"shift_terminal": 1.5})", StatusCode::kCorruptData, "shift_terminal");
  expect_parse_error(R"({"use_dynamic_shifting": true, "base_shift": null})", StatusCode::kCorruptData,
                     "base_shift");
  expect_parse_error(R"({"use_dynamic_shifting": true, "base_image_seq_len": 64, "max_image_seq_len": 64})",
                     StatusCode::kCorruptData, "base_image_seq_len");
  expect_parse_error("{not json", StatusCode::kCorruptData, "JSON");
  expect_parse_error("[1, 2]", StatusCode::kCorruptData, "object");
}

TEST(SchedulerConfig, AcceptsWhatDiffusersWritesWithDefaults) {
  // A config saved by a recent diffusers lists every option, most at their defaults.
  const auto c = FlowMatchEulerConfig::parse(R"({
      "_class_name": "FlowMatchEulerDiscreteScheduler", "_diffusers_version": "0.42.1",
      "base_image_seq_len": 256, "base_shift": 0.5, "invert_sigmas": false, "max_image_seq_len": 4096,
      "max_shift": 1.15, "num_train_timesteps": 1000, "shift": 3.0, "shift_terminal": null,
      "stochastic_sampling": false, "time_shift_type": "exponential", "use_beta_sigmas": false,
      "use_dynamic_shifting": true, "use_exponential_sigmas": false, "use_karras_sigmas": false,
      "a_future_option": false, "another": null})",
                                             "cfg.json");
  EXPECT_TRUE(c.use_dynamic_shifting);
  EXPECT_EQ(c.shift, 3.0);
  EXPECT_FALSE(c.shift_terminal.has_value());
  const auto z = FlowMatchEulerConfig::parse(R"({"shift_terminal": 0, "time_shift_type": "linear"})", "z");
  EXPECT_FALSE(z.shift_terminal.has_value());  // 0 is falsy in diffusers: off
  EXPECT_EQ(z.time_shift_type, TimeShiftType::kLinear);
  EXPECT_NE(c.summary().find("dynamic"), std::string::npos);
}

TEST(SchedulerConfig, LoadsFromAPipelineFolder) {
  const fs::path dir = fs::temp_directory_path() / ("paradit_sched_" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir / "scheduler");
  {
    std::ofstream(dir / "scheduler" / "scheduler_config.json") << R"({"shift": 3.0, "use_dynamic_shifting": true})";
  }
  for (const fs::path& p : {dir, dir / "scheduler", dir / "scheduler" / "scheduler_config.json"}) {
    const auto c = FlowMatchEulerConfig::load(p.string());
    EXPECT_TRUE(c.use_dynamic_shifting) << p;
  }
  const fs::path missing = dir / "nothing";
  fs::create_directories(missing);
  const Status st = capture([&] { FlowMatchEulerConfig::load(missing.string()); });
  EXPECT_EQ(st.code(), StatusCode::kNotFound);
  EXPECT_NE(st.message().find("nothing"), std::string::npos) << st.message();
  fs::remove_all(dir);
}

}  // namespace
}  // namespace paradit
