// The VAE decoder on the CPU backend against diffusers (tests/fixtures/vae, made by tools/make_vae_fixtures.py):
// raw decodes from both checkpoint layouts and both latent layouts, intermediates, the pipeline's 8-bit image,
// tiled decoding; configs; checkpoint errors naming the file and the tensor.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "../src/models/vae/vae_internal.h"
#include "../src/models/vae/vae_postprocess.h"
#include "paradit/io/safetensors.h"
#include "paradit/models/vae.h"
#include "test_util.h"

namespace paradit {
namespace {

namespace fs = std::filesystem;

constexpr double kTol = 1e-5;  // fp32 CPU vs diffusers

std::string fixture_dir(const std::string& fixture) { return test::fixtures_dir() + "/vae/" + fixture; }
std::string ldm_file(const std::string& fixture) { return fixture_dir(fixture) + "/" + fixture + "_ldm.safetensors"; }

// An NCHW fixture tensor seen as NHWC (a strided view; the comparisons accept any strides).
Tensor nhwc_view(const Tensor& nchw) { return nchw.transpose(1, 2).transpose(2, 3); }

std::unique_ptr<VaeDecoder> load_layout(Backend& backend, const std::string& fixture, const std::string& layout) {
  if (layout == "diffusers") return VaeDecoder::load(backend, fixture_dir(fixture) + "/vae");
  // The single file carries no config, and the tiny models' GroupNorm count (4) cannot be inferred.
  return VaeDecoder::load(backend, ldm_file(fixture), fixture_dir(fixture) + "/vae/config.json");
}

size_t decoder_param_bytes(const std::string& fixture) {
  const SafetensorsFile f = SafetensorsFile::open(fixture_dir(fixture) + "/vae/diffusion_pytorch_model.safetensors");
  size_t bytes = 0;
  for (const std::string& name : f.names())
    if (name.rfind("decoder.", 0) == 0 || name.rfind("post_quant_conv.", 0) == 0)
      bytes += size_t(shape_numel(f.info(name).shape)) * 4;
  return bytes;
}

// Largest per-pixel difference between our images and the fixture's (NHWC, values 0..255).
int max_pixel_diff(const std::vector<Rgb8Image>& got, const Tensor& expected, int64_t* exact = nullptr) {
  const Tensor e = test::to_contiguous_f32(expected);
  EXPECT_EQ(int64_t(got.size()), e.size(0));
  int worst = 0;
  int64_t same = 0, i = 0;
  for (const Rgb8Image& img : got) {
    EXPECT_EQ(img.height, e.size(1));
    EXPECT_EQ(img.width, e.size(2));
    EXPECT_EQ(img.channels, e.size(3));
    for (uint8_t p : img.pixels) {
      const int d = std::abs(int(p) - int(e.data_as<float>()[i++]));
      worst = std::max(worst, d);
      same += d == 0;
    }
  }
  if (exact) *exact = same;
  return worst;
}

struct Case {
  std::string fixture, layout;
};

class VaeFixture : public ::testing::TestWithParam<Case> {};

TEST_P(VaeFixture, MatchesDiffusers) {
  const Case& c = GetParam();
  const SafetensorsFile io = SafetensorsFile::open(fixture_dir(c.fixture) + "/io.safetensors");
  auto backend = create_cpu_backend();
  auto vae = load_layout(*backend, c.fixture, c.layout);
  EXPECT_EQ(vae->layout(), c.layout == "diffusers" ? "diffusers" : "ldm");
  EXPECT_EQ(vae->weight_bytes(), decoder_param_bytes(c.fixture));

  const Tensor latents = backend->upload(io.get("latents"), DType::kF32);
  const Tensor expected = nhwc_view(io.get("decoded"));

  // NCHW latents, with the intermediates.
  std::map<std::string, Tensor> seen;
  const Tensor out = backend->download_f32(vae::decode_with_tap(
      *vae, latents, LatentLayout::kNCHW, [&](const std::string& name, const Tensor& t) {
        seen[name] = backend->download_f32(t);
      }));
  ASSERT_EQ(out.shape(), expected.shape());
  EXPECT_LE(test::rel_l2(out, expected), kTol);
  for (const char* name : {"conv_in", "mid_block", "up_blocks.0"}) {
    ASSERT_TRUE(seen.count(name)) << name;
    EXPECT_LE(test::rel_l2(seen[name], nhwc_view(io.get(name))), kTol) << name;
  }
  EXPECT_EQ(test::max_abs_diff(backend->download_f32(vae->decode(latents)), out), 0.0) << "the tap changed the result";

  // NHWC latents.
  const Tensor latents_nhwc = backend->upload(test::to_contiguous_f32(nhwc_view(io.get("latents"))), DType::kF32);
  VaeDecodeOptions nhwc;
  nhwc.layout = LatentLayout::kNHWC;
  EXPECT_LE(test::rel_l2(backend->download_f32(vae->decode(latents_nhwc, nhwc)), expected), kTol);

  // The pipeline's 8-bit image, from either layout.
  int64_t exact = 0;
  EXPECT_LE(max_pixel_diff(vae->decode_to_rgb8(latents), io.get("image"), &exact), 1);
  EXPECT_GE(exact, io.get("image").numel() * 99 / 100) << "more than 1% of pixels off by one";
  EXPECT_LE(max_pixel_diff(vae->decode_to_rgb8(latents_nhwc, nhwc), io.get("image")), 1);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, VaeFixture,
                         ::testing::Values(Case{"flux_tiny", "diffusers"}, Case{"flux_tiny", "ldm"},
                                           Case{"sd_style_tiny", "diffusers"}, Case{"sd_style_tiny", "ldm"}),
                         [](const auto& info) { return info.param.fixture + "_" + info.param.layout; });

TEST(VaeDecode, BatchOfTwo) {
  const SafetensorsFile io = SafetensorsFile::open(fixture_dir("flux_tiny") + "/io.safetensors");
  auto backend = create_cpu_backend();
  auto vae = VaeDecoder::load(*backend, fixture_dir("flux_tiny"));  // the parent folder holds vae/, as a pipeline
  const Tensor latents = backend->upload(io.get("latents_b2"), DType::kF32);
  EXPECT_LE(test::rel_l2(backend->download_f32(vae->decode(latents)), nhwc_view(io.get("decoded_b2"))), kTol);
  EXPECT_LE(max_pixel_diff(vae->decode_to_rgb8(latents), io.get("image_b2")), 1);
}

TEST(VaeDecode, TiledMatchesEnableTiling) {
  const SafetensorsFile io = SafetensorsFile::open(fixture_dir("flux_tiny") + "/io.safetensors");
  auto backend = create_cpu_backend();
  auto vae = VaeDecoder::load(*backend, fixture_dir("flux_tiny") + "/vae");
  ASSERT_EQ(vae->config().sample_size, 32);  // 4×4-latent tiles over 8×12 latents
  const Tensor latents = backend->upload(io.get("latents"), DType::kF32);
  VaeDecodeOptions tiled;
  tiled.tiled = true;
  const Tensor out = backend->download_f32(vae->decode(latents, tiled));
  EXPECT_LE(test::rel_l2(out, nhwc_view(io.get("decoded_tiled"))), kTol);
  // Tiles change the result (per-tile GroupNorm statistics and attention): the fixture would catch a plain decode.
  EXPECT_GT(test::rel_l2(out, nhwc_view(io.get("decoded"))), 0.1);
  // Latents that fit in one tile are decoded whole, as diffusers does.
  tiled.tile_sample_size = 96;
  EXPECT_LE(test::rel_l2(backend->download_f32(vae->decode(latents, tiled)), nhwc_view(io.get("decoded"))), kTol);
  tiled.tile_sample_size = 8;  // one latent per tile: diffusers would never advance
  EXPECT_THROW(vae->decode(latents, tiled), Error);
}

TEST(VaeDecode, RefusesBadLatents) {
  auto backend = create_cpu_backend();
  auto vae = VaeDecoder::load(*backend, fixture_dir("flux_tiny") + "/vae");
  const auto expect_invalid = [&](const Tensor& latents, LatentLayout layout, const char* what) {
    VaeDecodeOptions o;
    o.layout = layout;
    try {
      vae->decode(latents, o);
      ADD_FAILURE() << what << ": no error";
    } catch (const Error& e) {
      EXPECT_EQ(e.status().code(), StatusCode::kInvalidArgument) << what << ": " << e.what();
    }
  };
  expect_invalid(Tensor(), LatentLayout::kNCHW, "undefined");
  expect_invalid(backend->empty({1, 4, 8, 8}), LatentLayout::kNCHW, "4 channels for a 16-channel VAE");
  expect_invalid(backend->empty({1, 16, 8, 8}), LatentLayout::kNHWC, "NCHW latents declared NHWC");
  expect_invalid(backend->empty({16, 8, 8}), LatentLayout::kNCHW, "no batch dimension");
}

// --- Configs ---

TEST(VaeConfigJson, PublishedConfigs) {
  // FLUX.1-dev vae/config.json (as published).
  const std::string flux = R"({"_class_name": "AutoencoderKL", "_diffusers_version": "0.30.0.dev0",
    "act_fn": "silu", "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
    "force_upcast": true, "in_channels": 3, "latent_channels": 16, "latents_mean": null, "latents_std": null,
    "layers_per_block": 2, "mid_block_add_attention": true, "norm_num_groups": 32, "out_channels": 3,
    "sample_size": 1024, "scaling_factor": 0.3611, "shift_factor": 0.1159,
    "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"],
    "use_post_quant_conv": false, "use_quant_conv": false})";
  const VaeConfig f = VaeConfig::from_diffusers_json(flux, "flux");
  EXPECT_EQ(f, VaeConfig::flux());
  EXPECT_EQ(f.scale_factor(), 8);
  // SD3: the same network, other scaling and shift.
  std::string sd3 = flux;
  sd3.replace(sd3.find("0.3611"), 6, "1.5305");
  sd3.replace(sd3.find("0.1159"), 6, "0.0609");
  EXPECT_EQ(VaeConfig::from_diffusers_json(sd3, "sd3"), VaeConfig::sd3());
  // SD1.x: shift_factor null, post_quant_conv by default, 4 latent channels.
  const VaeConfig sd = VaeConfig::from_diffusers_json(
      R"({"block_out_channels": [128, 256, 512, 512], "latent_channels": 4, "layers_per_block": 2,
          "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"],
          "scaling_factor": 0.18215, "shift_factor": null, "sample_size": [512, 512]})",
      "sd15");
  EXPECT_EQ(sd.shift_factor, 0.0);
  EXPECT_TRUE(sd.use_post_quant_conv);
  EXPECT_EQ(sd.sample_size, 512);
}

TEST(VaeConfigJson, RefusesWhatItCannotRun) {
  const auto code_of = [](const std::string& json) {
    try {
      VaeConfig::from_diffusers_json(json, "test.json");
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("test.json"), std::string::npos) << e.what();
      return e.status().code();
    }
    return StatusCode::kOk;
  };
  EXPECT_EQ(code_of(R"({"_class_name": "AutoencoderTiny"})"), StatusCode::kInvalidArgument);
  EXPECT_EQ(code_of(R"({"up_block_types": ["UpDecoderBlock2D"], "act_fn": "gelu"})"), StatusCode::kUnimplemented);
  EXPECT_EQ(code_of(R"({"block_out_channels": [64, 64],
                        "up_block_types": ["UpDecoderBlock2D", "AttnUpDecoderBlock2D"]})"),
            StatusCode::kUnimplemented);
  EXPECT_EQ(code_of(R"({"block_out_channels": [48], "norm_num_groups": 32})"), StatusCode::kInvalidArgument);
  EXPECT_EQ(code_of(R"({"latent_channels": -4})"), StatusCode::kCorruptData);
  EXPECT_EQ(code_of("{not json"), StatusCode::kCorruptData);
}

TEST(VaeLdmConfig, InferredFromShapes) {
  {
    const SafetensorsSet set = SafetensorsSet::open(ldm_file("flux_tiny"));
    const VaeConfig c = vae::infer_ldm_config(set, "");
    EXPECT_EQ(c.block_out_channels, (std::vector<int>{8, 16, 16, 16}));
    EXPECT_EQ(c.layers_per_block, 1);
    EXPECT_EQ(c.latent_channels, 16);
    EXPECT_FALSE(c.use_post_quant_conv);
    EXPECT_TRUE(c.mid_block_add_attention);
    EXPECT_EQ(c.scaling_factor, 0.3611);  // the FLUX values: the file cannot say
    EXPECT_EQ(c.shift_factor, 0.1159);
    EXPECT_EQ(c.norm_num_groups, 32);
  }
  {
    const SafetensorsSet set = SafetensorsSet::open(ldm_file("sd_style_tiny"));
    const VaeConfig c = vae::infer_ldm_config(set, "first_stage_model.");
    EXPECT_EQ(c.block_out_channels, (std::vector<int>{8, 8}));
    EXPECT_EQ(c.layers_per_block, 2);
    EXPECT_EQ(c.latent_channels, 4);
    EXPECT_TRUE(c.use_post_quant_conv);
    EXPECT_FALSE(c.mid_block_add_attention);
    EXPECT_EQ(c.scaling_factor, 0.18215);
  }
  // Opened without a config, the inferred 32 groups do not divide the tiny widths: an error saying what to pass.
  auto backend = create_cpu_backend();
  try {
    VaeDecoder::load(*backend, ldm_file("flux_tiny"));
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.status().code(), StatusCode::kInvalidArgument) << e.what();
    EXPECT_NE(std::string(e.what()).find("config_json"), std::string::npos) << e.what();
  }
}

TEST(VaeCheckpoint, OpensEveryForm) {
  auto backend = create_cpu_backend();
  const std::string dir = fixture_dir("flux_tiny");
  const VaeConfig expected = VaeDecoder::load(*backend, dir + "/vae")->config();
  std::ifstream in(dir + "/vae/config.json");
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::vector<std::pair<std::string, std::string>> forms = {
      {dir, ""},                                                   // pipeline root
      {dir + "/vae/diffusion_pytorch_model.safetensors", ""},      // diffusers file, config beside it
      {ldm_file("flux_tiny"), dir + "/vae"},                       // LDM file + folder holding config.json
      {ldm_file("flux_tiny"), text},                               // LDM file + the JSON text
  };
  for (const auto& [path, config] : forms) {
    auto vae = VaeDecoder::load(*backend, path, config);
    EXPECT_EQ(vae->config(), expected) << path;
    EXPECT_EQ(vae->weight_bytes(), decoder_param_bytes("flux_tiny")) << path;
  }
}

// --- Checkpoint errors ---

// A scratch copy of a fixture's checkpoint with tensors changed, removed from the test's temp dir afterwards.
class Scratch {
 public:
  Scratch() {
    dir_ = fs::temp_directory_path() / ("paradit_vae_test_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  ~Scratch() {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  // Writes `name` with the tensors of `src`, minus `drop`, with `replace` substituted or added.
  std::string write(const std::string& name, const std::string& src, const std::string& drop,
                    const std::map<std::string, Tensor>& replace = {}) {
    const SafetensorsFile f = SafetensorsFile::open(src);
    std::vector<std::pair<std::string, Tensor>> tensors;
    for (const std::string& n : f.names())
      if (n != drop && !replace.count(n)) tensors.emplace_back(n, f.get(n));
    for (const auto& [n, t] : replace) tensors.emplace_back(n, t);
    const std::string path = (dir_ / name).string();
    fs::create_directories(fs::path(path).parent_path());
    write_safetensors(path, tensors);
    return path;
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

 private:
  fs::path dir_;
};

void expect_error(const std::function<void()>& fn, StatusCode code, const std::vector<std::string>& mentions) {
  try {
    fn();
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.status().code(), code) << e.what();
    for (const std::string& m : mentions)
      EXPECT_NE(std::string(e.what()).find(m), std::string::npos) << "'" << m << "' not in: " << e.what();
  }
}

TEST(VaeCheckpoint, MissingTensorNamesFileAndTensor) {
  auto backend = create_cpu_backend();
  Scratch s;
  const std::string config = fixture_dir("flux_tiny") + "/vae/config.json";
  // diffusers folder without one resnet weight.
  const std::string dif = s.write("vae/diffusion_pytorch_model.safetensors",
                                  fixture_dir("flux_tiny") + "/vae/diffusion_pytorch_model.safetensors",
                                  "decoder.up_blocks.2.resnets.1.conv2.weight");
  fs::copy_file(config, s.path("vae/config.json"));
  expect_error([&] { VaeDecoder::load(*backend, s.path("vae")); }, StatusCode::kNotFound,
               {"decoder.up_blocks.2.resnets.1.conv2.weight", dif});
  // LDM file without the attention's value projection: named as stored.
  const std::string ldm = s.write("ae.safetensors", ldm_file("flux_tiny"), "decoder.mid.attn_1.v.weight");
  expect_error([&] { VaeDecoder::load(*backend, ldm, config); }, StatusCode::kNotFound,
               {"decoder.mid.attn_1.v.weight", ldm});
}

TEST(VaeCheckpoint, WrongShapeNamesFileAndTensor) {
  auto backend = create_cpu_backend();
  Scratch s;
  const std::string config = fixture_dir("flux_tiny") + "/vae/config.json";
  const std::string ldm = s.write("ae.safetensors", ldm_file("flux_tiny"), "",
                                  {{"decoder.up.0.block.0.nin_shortcut.weight", test::random_host({8, 16, 3, 3}, 1)}});
  expect_error([&] { VaeDecoder::load(*backend, ldm, config); }, StatusCode::kCorruptData,
               {"decoder.up.0.block.0.nin_shortcut.weight", ldm, "[8, 16, 3, 3]", "[8, 16, 1, 1]"});
  // A config that does not describe the file: one resnet per block fewer than stored.
  std::ifstream in(config);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  text.replace(text.find("\"layers_per_block\": 1"), 21, "\"layers_per_block\": 0");
  expect_error([&] { VaeDecoder::load(*backend, ldm_file("flux_tiny"), text); }, StatusCode::kCorruptData,
               {"decoder.up.0.block.1.", ldm_file("flux_tiny")});
  // Not a VAE at all.
  const std::string other = s.write("other.safetensors", ldm_file("flux_tiny"), "decoder.conv_in.weight");
  expect_error([&] { VaeDecoder::load(*backend, other, config); }, StatusCode::kInvalidArgument,
               {other, "decoder.conv_in.weight"});
  expect_error([&] { VaeDecoder::load(*backend, s.path("nothing_here")); }, StatusCode::kNotFound,
               {"nothing_here"});
}

// The 8-bit conversion against numpy's arithmetic written out plainly ((y·0.5 + 0.5).clip(0, 1)·255, round half
// to even, NaN → 0): random values, the edges, values either side of every half step, and an image large
// enough to be converted by several threads.
TEST(VaeToRgb8, MatchesNumpyRounding) {
  std::vector<float> values = {std::nanf(""), INFINITY, -INFINITY, -1.0f, 1.0f, 0.0f, -2.0f, 3.0f, -0.0f};
  for (int k = 0; k < 256; ++k) {
    const float half = ((float(k) + 0.5f) / 255.0f) * 2.0f - 1.0f;
    values.insert(values.end(), {half, std::nextafter(half, -2.0f), std::nextafter(half, 2.0f)});
  }
  const int64_t H = 640, W = 700;  // 1.3 M values: threaded
  const Tensor random = test::random_host({1, H, W, 3}, 77);
  Tensor y = Tensor::empty({1, H, W, 3}, DType::kF32, cpu_allocator());
  std::copy_n(random.data_as<float>(), y.numel(), y.data_as<float>());
  std::copy(values.begin(), values.end(), y.data_as<float>() + 1000);
  const std::vector<Rgb8Image> got = vae::to_rgb8(*create_cpu_backend(), y);
  ASSERT_EQ(got.size(), 1u);
  ASSERT_EQ(int64_t(got[0].pixels.size()), y.numel());
  int64_t wrong = 0;
  for (int64_t i = 0; i < y.numel(); ++i) {
    const float s = std::clamp(y.data_as<float>()[i] * 0.5f + 0.5f, 0.0f, 1.0f) * 255.0f;
    const uint8_t want = std::isnan(s) ? uint8_t(0) : uint8_t(std::nearbyint(s));
    wrong += got[0].pixels[size_t(i)] != want;
  }
  EXPECT_EQ(wrong, 0);
  EXPECT_EQ(got[0].pixels[1000], 0);    // NaN
  EXPECT_EQ(got[0].pixels[1001], 255);  // +inf
  EXPECT_EQ(got[0].pixels[1002], 0);    // -inf
}

}  // namespace
}  // namespace paradit
