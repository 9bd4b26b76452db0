// The VAE decoder on the CUDA backend (bf16) against the CPU backend (fp32 reference): the tiny fixtures'
// decodes (plain, batch of two, tiled) and the pipeline's 8-bit images.
#include <algorithm>
#include <cstdlib>
#include <string>

#include "paradit/io/safetensors.h"
#include "paradit/models/vae.h"
#include "test_util.h"

namespace paradit {
namespace {

constexpr double kTol = 2e-2;  // bf16 GPU vs fp32 reference

std::string fixture_dir(const std::string& fixture) { return test::fixtures_dir() + "/vae/" + fixture; }

TEST(VaeGpu, TinyFixturesMatchCpu) {
  PD_REQUIRE_GPU(cuda);
  auto cpu = create_cpu_backend();
  for (const std::string fixture : {"flux_tiny", "sd_style_tiny"}) {
    const SafetensorsFile io = SafetensorsFile::open(fixture_dir(fixture) + "/io.safetensors");
    auto on_cpu = VaeDecoder::load(*cpu, fixture_dir(fixture) + "/vae");
    auto on_gpu = VaeDecoder::load(*cuda, fixture_dir(fixture) + "/vae");
    std::vector<std::string> inputs = {"latents"};
    if (io.contains("latents_b2")) inputs.push_back("latents_b2");
    for (const std::string& name : inputs) {
      const Tensor host = io.get(name);
      // f32 latents on the GPU too: decode converts them to the compute dtype (the tiled test passes bf16).
      const Tensor ref = cpu->download_f32(on_cpu->decode(cpu->upload(host, DType::kF32)));
      const Tensor got = cuda->download_f32(on_gpu->decode(cuda->upload(host, DType::kF32)));
      ASSERT_EQ(got.shape(), ref.shape()) << fixture << " " << name;
      EXPECT_LE(test::rel_l2(got, ref), kTol) << fixture << " " << name;

      // 8-bit images: bf16 moves a few pixels by a few levels, not more.
      const auto ref8 = on_cpu->decode_to_rgb8(cpu->upload(host, DType::kF32));
      const auto got8 = on_gpu->decode_to_rgb8(cuda->upload(host, DType::kF32));
      ASSERT_EQ(got8.size(), ref8.size());
      double sum = 0;
      int64_t n = 0;
      for (size_t b = 0; b < ref8.size(); ++b) {
        ASSERT_EQ(got8[b].pixels.size(), ref8[b].pixels.size());
        for (size_t i = 0; i < ref8[b].pixels.size(); ++i, ++n)
          sum += std::abs(int(got8[b].pixels[i]) - int(ref8[b].pixels[i]));
      }
      EXPECT_LE(sum / double(n), 2.5) << fixture << " " << name << ": mean 8-bit difference";
    }
  }
}

TEST(VaeGpu, TiledMatchesCpu) {
  PD_REQUIRE_GPU(cuda);
  auto cpu = create_cpu_backend();
  const SafetensorsFile io = SafetensorsFile::open(fixture_dir("flux_tiny") + "/io.safetensors");
  auto on_cpu = VaeDecoder::load(*cpu, fixture_dir("flux_tiny") + "/vae");
  auto on_gpu = VaeDecoder::load(*cuda, fixture_dir("flux_tiny") + "/vae");
  VaeDecodeOptions tiled;
  tiled.tiled = true;
  const Tensor ref = cpu->download_f32(on_cpu->decode(cpu->upload(io.get("latents"), DType::kF32), tiled));
  const Tensor got = cuda->download_f32(on_gpu->decode(cuda->upload(io.get("latents"), DType::kBF16), tiled));
  EXPECT_LE(test::rel_l2(got, ref), kTol);
}

}  // namespace
}  // namespace paradit
