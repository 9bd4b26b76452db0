// FluxPipeline on the CPU backend against diffusers' FluxPipeline (tests/fixtures/pipeline, made from
// models/tiny-flux by tools/make_pipeline_fixture.py): token ids, text encoders, denoising, decoding and the whole
// generate() from the same initial latents; single-file loading; seeds and batches; bad inputs.
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "paradit/io/safetensors.h"
#include "paradit/pipeline/flux_pipeline.h"
#include "paradit/pipeline/latents.h"
#include "test_util.h"

namespace paradit {
namespace {

namespace fs = std::filesystem;

constexpr double kLatentTol = 1e-5;  // f32 CPU vs diffusers, relative L2
// torch's f32 exp is not correctly rounded (SLEEF): 55 of the 128 timestep-sinusoid frequencies differ by an ulp
// from glibc's, and at 1000·guidance = 5000 (the `truncated` case) that moves the guidance embedding by up to 4e-4
// and the final latents by 1.02e-5 (at guidance 3.5: 5e-7). The image is unaffected.
constexpr double kLatentTolGuidance5 = 2e-5;
constexpr int kPixelTol = 1;         // 8-bit levels

std::string model_dir() { return test::fixtures_dir() + "/../../models/tiny-flux"; }
std::string pipeline_fixtures() { return test::fixtures_dir() + "/pipeline"; }

// One reference run of diffusers' FluxPipeline: its arguments (metadata "case") and tensors.
struct Case {
  std::string path;
  SafetensorsFile file;
  nlohmann::json args;

  explicit Case(const std::string& name)
      : path(pipeline_fixtures() + "/" + name + ".safetensors"),
        file(SafetensorsFile::open(path)),
        args(nlohmann::json::parse(file.metadata().at("case"))) {}

  Tensor f32(const std::string& name) const { return test::to_contiguous_f32(file.get(name)); }
  std::vector<int32_t> ids(const std::string& name) const {
    const Tensor t = f32(name);
    return std::vector<int32_t>(t.data_as<float>(), t.data_as<float>() + t.numel());
  }
  int64_t width() const { return args["width"]; }
  int64_t height() const { return args["height"]; }
  int batch() const { return args["batch"]; }
  bool has_negative() const { return !args["negative_prompt"].is_null(); }

  FluxRequest request() const {
    FluxRequest r;
    r.prompt = args["prompt"];
    if (has_negative()) r.negative_prompt = args["negative_prompt"].get<std::string>();
    r.true_cfg_scale = args["true_cfg_scale"];
    r.guidance = args["guidance"];
    r.steps = args["steps"];
    r.width = width();
    r.height = height();
    r.batch_count = batch();
    r.max_sequence_length = args["max_sequence_length"];
    r.init_latents = load_init_latents(path, batch(), height(), width());
    return r;
  }
};

FluxPipelineSources folder_sources() {
  FluxPipelineSources s;
  s.model_dir = model_dir();
  return s;
}

FluxPipelineSources single_file_sources() {
  FluxPipelineSources s;
  s.diffusion_model = pipeline_fixtures() + "/flux1-tiny.safetensors";
  s.vae = pipeline_fixtures() + "/ae.safetensors";
  s.clip_l = pipeline_fixtures() + "/clip_l.safetensors";
  s.t5xxl = pipeline_fixtures() + "/t5xxl_fp16.safetensors";
  s.clip_tokenizer = model_dir() + "/tokenizer";
  s.t5_tokenizer = model_dir() + "/tokenizer_2/spiece.model";
  s.config_dir = model_dir();  // tiny widths cannot be inferred from shapes
  return s;
}

// Largest per-pixel difference between images and a reference NHWC [B, H, W, 3] tensor of 0..255 values.
int max_pixel_diff(const std::vector<Rgb8Image>& got, const Tensor& expected) {
  EXPECT_EQ(int64_t(got.size()), expected.size(0));
  int worst = 0;
  int64_t i = 0;
  for (const Rgb8Image& img : got) {
    EXPECT_EQ(img.height, expected.size(1));
    EXPECT_EQ(img.width, expected.size(2));
    for (uint8_t p : img.pixels) worst = std::max(worst, std::abs(int(p) - int(expected.data_as<float>()[i++])));
  }
  EXPECT_EQ(i, expected.numel());
  return worst;
}

// Runs fn, which must throw Error(code) with every one of `parts` in its message.
void expect_error(const std::function<void()>& fn, StatusCode code, const std::vector<std::string>& parts) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected " << status_code_name(code);
  } catch (const Error& e) {
    EXPECT_EQ(e.status().code(), code) << e.what();
    for (const auto& p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << p << " not in: " << e.what();
  }
}

class PipelineTest : public ::testing::Test {
 protected:
  void SetUp() override { backend_ = create_cpu_backend(); }
  std::unique_ptr<FluxPipeline> load(const FluxPipelineSources& s, const FluxPipelineOptions& o = {}) {
    return FluxPipeline::load(*backend_, s, o);
  }
  std::unique_ptr<Backend> backend_;
};

const char* const kCases[] = {"base", "cfg", "truncated"};

TEST_F(PipelineTest, LoadsTheFolderAsDev) {
  auto p = load(folder_sources());
  EXPECT_EQ(p->variant(), FluxVariant::kDev);
  EXPECT_EQ(p->default_steps(), 28);
  EXPECT_EQ(p->default_max_sequence_length(), 512);
  EXPECT_EQ(p->model_name(), "tiny-flux");
}

TEST_F(PipelineTest, TokenIdsMatchTransformers) {
  auto p = load(folder_sources());
  for (const char* name : kCases) {
    const Case c(name);
    for (const std::string prefix : {"", "negative_"}) {
      if (!prefix.empty() && !c.has_negative()) continue;
      const std::string prompt = c.args[prefix.empty() ? "prompt" : "negative_prompt"];
      const FluxPromptEmbeds e = p->encode_prompt(prompt, c.args["max_sequence_length"], nullptr);
      EXPECT_EQ(e.clip_tokens.ids, c.ids(prefix + "clip_ids")) << name << " " << prefix;
      EXPECT_EQ(e.t5_tokens.ids, c.ids(prefix + "t5_ids")) << name << " " << prefix;
    }
  }
}

TEST_F(PipelineTest, TextEncodersMatchDiffusers) {
  auto p = load(folder_sources());
  for (const char* name : kCases) {
    const Case c(name);
    const FluxPromptEmbeds e = p->encode_tokens(c.ids("clip_ids"), c.ids("t5_ids"));
    EXPECT_LE(test::rel_l2(backend_->download_f32(e.prompt_embeds), c.f32("prompt_embeds")), kLatentTol) << name;
    EXPECT_LE(test::rel_l2(backend_->download_f32(e.pooled), c.f32("pooled_prompt_embeds")), kLatentTol) << name;
  }
}

TEST_F(PipelineTest, DenoiseAndDecodeMatchDiffusers) {
  auto p = load(folder_sources());
  const Case c("base");
  const FluxPromptEmbeds e = p->encode_tokens(c.ids("clip_ids"), c.ids("t5_ids"));
  int calls = 0;
  const Tensor final = p->denoise(c.f32("latents"), c.width(), c.height(), c.args["steps"], c.args["guidance"], e,
                                  nullptr, 1.0f, [&](const FluxProgress& pr) {
                                    EXPECT_EQ(pr.step, ++calls);
                                    EXPECT_EQ(pr.steps, 4);
                                  });
  EXPECT_EQ(calls, 4);
  EXPECT_LE(test::rel_l2(final, c.f32("final_latents")), kLatentTol);
  // Decoding diffusers' own final latents isolates the VAE and the unpacking.
  EXPECT_LE(max_pixel_diff(p->decode(c.f32("final_latents"), c.width(), c.height()), c.f32("image")), kPixelTol);
}

TEST_F(PipelineTest, GenerateMatchesDiffusersFromTheSameLatents) {
  auto p = load(folder_sources());
  for (const char* name : kCases) {
    const Case c(name);
    const FluxResult r = p->generate(c.request());
    ASSERT_EQ(int(r.images.size()), c.batch()) << name;
    const double tol = c.args["guidance"] == 5.0 ? kLatentTolGuidance5 : kLatentTol;
    EXPECT_LE(test::rel_l2(r.latents, c.f32("final_latents")), tol) << name;
    EXPECT_LE(max_pixel_diff(r.images, c.f32("image")), kPixelTol) << name;
    EXPECT_EQ(r.steps, int(c.args["steps"]));
    EXPECT_EQ(int(r.timings.step_s.size()), r.steps * c.batch());
  }
}

TEST_F(PipelineTest, SingleFilesGiveTheSameImage) {
  auto folder = load(folder_sources());
  auto single = load(single_file_sources());
  EXPECT_EQ(single->variant(), FluxVariant::kDev);
  EXPECT_EQ(single->model_name(), "flux1-tiny");
  const Case c("base");
  const FluxResult a = folder->generate(c.request());
  const FluxResult b = single->generate(c.request());
  // The same weight values (stored bf16, fp16 or f32) give the same arithmetic.
  EXPECT_LE(test::rel_l2(b.latents, a.latents), 1e-6);
  EXPECT_LE(max_pixel_diff(b.images, c.f32("image")), kPixelTol);
}

TEST_F(PipelineTest, SingleFilesOverrideFolderPieces) {
  FluxPipelineSources s = folder_sources();
  s.vae = pipeline_fixtures() + "/ae.safetensors";
  s.config_dir = model_dir();
  auto p = load(s);
  const Case c("base");
  EXPECT_LE(max_pixel_diff(p->generate(c.request()).images, c.f32("image")), kPixelTol);
}

TEST_F(PipelineTest, OverLongPromptIsTruncatedWithAWarning) {
  auto p = load(folder_sources());
  const Case c("truncated");
  const FluxResult r = p->generate(c.request());
  ASSERT_EQ(r.warnings.size(), 2u);
  EXPECT_NE(r.warnings[0].find("truncated for CLIP"), std::string::npos) << r.warnings[0];
  EXPECT_NE(r.warnings[1].find("truncated for T5"), std::string::npos) << r.warnings[1];
  EXPECT_NE(r.warnings[1].find("max_sequence_length is 24"), std::string::npos) << r.warnings[1];
}

TEST_F(PipelineTest, SeedsAreReproducibleAndPerImage) {
  auto p = load(folder_sources());
  FluxRequest req;
  req.prompt = "a red fox in the snow";
  req.width = 48;
  req.height = 32;
  req.steps = 2;
  req.seed = 1234;
  req.batch_count = 2;
  const FluxResult batch = p->generate(req);
  EXPECT_EQ(batch.seeds, (std::vector<uint64_t>{1234, 1235}));

  // Image 1 of the batch is the image of seed + 1 alone: noise is drawn per image on the host.
  req.batch_count = 1;
  req.seed = 1235;
  const FluxResult second = p->generate(req);
  EXPECT_EQ(second.images[0].pixels, batch.images[1].pixels);

  // And the seed is exactly flux_initial_noise's, as --init-latents would pass it.
  req.seed = 999;
  req.init_latents = flux_initial_noise(1234, 1, req.height, req.width);
  EXPECT_EQ(p->generate(req).images[0].pixels, batch.images[0].pixels);
}

TEST_F(PipelineTest, ReleasedTextEncodersAreReloaded) {
  FluxPipelineOptions o;
  o.release_text_encoders = true;
  auto p = load(folder_sources(), o);
  const Case c("base");
  for (int i = 0; i < 2; ++i) EXPECT_LE(max_pixel_diff(p->generate(c.request()).images, c.f32("image")), kPixelTol);
}

TEST_F(PipelineTest, EmbeddedDefaultIsFound) {
  const FluxPipelineSources s = FluxPipelineSources::embedded_default();
  EXPECT_TRUE(s.embedded);
  EXPECT_TRUE(fs::equivalent(s.model_dir, model_dir()));
  EXPECT_TRUE(FluxPipelineSources{}.empty());
  EXPECT_FALSE(s.empty());
}

// --- Bad inputs: clear errors naming what is wrong, never a crash ---

// A copy of models/tiny-flux in a fresh temporary folder, for breaking.
fs::path copy_model(const std::string& tag) {
  const fs::path dir = fs::temp_directory_path() / ("paradit_pipeline_test_" + tag + "_" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::copy(model_dir(), dir, fs::copy_options::recursive);
  return dir;
}

TEST_F(PipelineTest, MissingFolderComponentIsNamed) {
  const fs::path dir = copy_model("missing");
  fs::remove_all(dir / "vae");
  fs::remove_all(dir / "tokenizer_2");
  FluxPipelineSources s;
  s.model_dir = dir.string();
  expect_error([&] { load(s); }, StatusCode::kNotFound, {"the VAE", "the T5 tokenizer", "--vae", "--t5-tokenizer"});
  fs::remove(dir / "model_index.json");
  expect_error([&] { load(s); }, StatusCode::kNotFound, {"model_index.json"});
  fs::remove_all(dir);
}

TEST_F(PipelineTest, MissingSingleFilesAreAllNamed) {
  FluxPipelineSources s;
  s.diffusion_model = pipeline_fixtures() + "/flux1-tiny.safetensors";
  s.vae = "/nonexistent/ae.safetensors";
  expect_error([&] { load(s); }, StatusCode::kNotFound,
               {"--vae: no such file", "/nonexistent/ae.safetensors", "--clip_l", "--t5xxl", "--clip-tokenizer",
                "--t5-tokenizer"});
}

TEST_F(PipelineTest, OtherPipelineClassIsRefused) {
  const fs::path dir = copy_model("class");
  std::ofstream(dir / "model_index.json") << R"({"_class_name": "StableDiffusion3Pipeline"})";
  FluxPipelineSources s;
  s.model_dir = dir.string();
  expect_error([&] { load(s); }, StatusCode::kUnimplemented, {"StableDiffusion3Pipeline", "FluxPipeline"});
  fs::remove_all(dir);
}

TEST_F(PipelineTest, TruncatedWeightsFileIsNamed) {
  const fs::path dir = copy_model("truncated");
  const fs::path weights = dir / "transformer" / "diffusion_pytorch_model.safetensors";
  fs::resize_file(weights, fs::file_size(weights) / 2);
  FluxPipelineSources s;
  s.model_dir = dir.string();
  expect_error([&] { load(s); }, StatusCode::kCorruptData, {weights.string()});
  fs::remove_all(dir);
}

TEST_F(PipelineTest, MismatchedComponentsAreRefused) {
  FluxPipelineSources s = folder_sources();
  // The text-encoder fixture's CLIP has the right width but a 1000-token vocabulary.
  s.clip_l = test::fixtures_dir() + "/text_encoders/clip_l.safetensors";
  s.config_dir = test::fixtures_dir() + "/text_encoders_as_pipeline_missing";
  expect_error([&] { load(s); }, StatusCode::kNotFound, {"the config of the CLIP text encoder"});
  s.config_dir.clear();
  s.clip_l = test::fixtures_dir() + "/text_encoders/text_encoder";
  expect_error([&] { load(s); }, StatusCode::kInvalidArgument, {"different models"});
}

TEST_F(PipelineTest, BadRequestsAreRefused) {
  auto p = load(folder_sources());
  FluxRequest req;
  req.prompt = "x";
  req.steps = 1;
  req.width = 100;
  req.height = 32;
  expect_error([&] { p->generate(req); }, StatusCode::kInvalidArgument, {"width 100", "multiple of 16", "96", "112"});
  req.width = 32;
  req.height = 0;
  expect_error([&] { p->generate(req); }, StatusCode::kInvalidArgument, {"height 0"});
  req.height = 32;
  req.max_sequence_length = 513;
  expect_error([&] { p->generate(req); }, StatusCode::kInvalidArgument, {"1..512"});
  req.max_sequence_length = 0;
  req.batch_count = 0;
  expect_error([&] { p->generate(req); }, StatusCode::kInvalidArgument, {"batch count"});
  req.batch_count = 1;
  req.init_latents = flux_initial_noise(1, 1, 48, 64);
  expect_error([&] { p->generate(req); }, StatusCode::kInvalidArgument, {"init latents", "[1, 4, 64]"});
  const Case c("base");
  expect_error([&] { load_init_latents(c.path, 1, 32, 32); }, StatusCode::kInvalidArgument, {"latents"});
}

}  // namespace
}  // namespace paradit
