// The FLUX transformer on the CUDA backend (bf16) against the CPU backend (fp32 reference): the tiny fixtures,
// and a random model with the real head dim (128) and realistic widths, built from the same seed on both.
#include <algorithm>
#include <string>

#include "paradit/io/flux_checkpoint.h"
#include "paradit/io/safetensors.h"
#include "paradit/models/flux_transformer.h"
#include "flux_fixture.h"
#include "test_util.h"

namespace paradit {
namespace {

constexpr double kTol = 2e-2;  // bf16 GPU vs fp32 reference



TEST(FluxTransformerGpu, TinyFixturesMatchCpu) {
  PD_REQUIRE_GPU(cuda);
  auto cpu = create_cpu_backend();
  for (const std::string fixture : {"flux_dev_tiny", "flux_schnell_tiny"}) {
    const std::string dir = test::fixtures_dir() + "/" + fixture;
    const SafetensorsFile io = SafetensorsFile::open(dir + "/io.safetensors");
    const FluxCheckpoint ckpt = FluxCheckpoint::open(dir + "/transformer");
    auto on_cpu = FluxTransformer::load(*cpu, ckpt);
    auto on_gpu = FluxTransformer::load(*cuda, ckpt);
    const Tensor ref = cpu->download_f32(on_cpu->forward(test::flux_fixture_inputs(*cpu, io)));
    const Tensor got = cuda->download_f32(on_gpu->forward(test::flux_fixture_inputs(*cuda, io)));
    EXPECT_LE(test::rel_l2(got, ref), kTol) << fixture;
  }
}

// img_ids of an h×w grid: (0, row, col) for token row·w + col, as FluxPipeline makes them.
Tensor grid_ids(int h, int w) {
  Tensor ids = Tensor::empty({int64_t(h) * w, 3}, DType::kF32, cpu_allocator());
  float* p = ids.data_as<float>();
  for (int r = 0; r < h; ++r) {
    for (int c = 0; c < w; ++c) {
      p[(r * w + c) * 3 + 0] = 0.0f;
      p[(r * w + c) * 3 + 1] = float(r);
      p[(r * w + c) * 3 + 2] = float(c);
    }
  }
  return ids;
}

// Inputs from fill_random, identical on every backend up to the rounding of its compute dtype.
FluxInputs random_inputs(Backend& backend, const FluxConfig& c, int64_t batch, int h, int w, int64_t text_tokens) {
  FluxInputs in;
  in.hidden_states = backend.empty({batch, int64_t(h) * w, c.in_channels});
  in.encoder_hidden_states = backend.empty({batch, text_tokens, c.joint_attention_dim});
  in.pooled_projections = backend.empty({batch, c.pooled_projection_dim});
  backend.fill_random(in.hidden_states, 11, 1.0f);
  backend.fill_random(in.encoder_hidden_states, 12, 1.0f);
  backend.fill_random(in.pooled_projections, 13, 1.0f);
  in.timestep = {0.81f, 0.27f};
  in.guidance = {3.5f, 5.0f};
  in.img_ids = grid_ids(h, w);
  in.txt_ids = Tensor::empty({text_tokens, 3}, DType::kF32, cpu_allocator());
  std::fill_n(in.txt_ids.data_as<float>(), text_tokens * 3, 0.0f);
  return in;
}

TEST(FluxTransformerGpu, RandomRealHeadDimMatchesCpu) {
  PD_REQUIRE_GPU(cuda);
  auto cpu = create_cpu_backend();
  FluxConfig c = FluxConfig::dev();
  c.num_layers = 2;
  c.num_single_layers = 2;
  c.num_attention_heads = 4;  // 4 × 128
  c.joint_attention_dim = 256;
  c.pooled_projection_dim = 64;
  // Batch 2 on a non-square 8×32 grid: N = 256 image tokens, T = 64 text tokens.
  auto on_cpu = FluxTransformer::random(*cpu, c, 7);
  auto on_gpu = FluxTransformer::random(*cuda, c, 7);
  const Tensor ref = cpu->download_f32(on_cpu->forward(random_inputs(*cpu, c, 2, 8, 32, 64)));
  const Tensor got = cuda->download_f32(on_gpu->forward(random_inputs(*cuda, c, 2, 8, 32, 64)));
  EXPECT_LE(test::rel_l2(got, ref), kTol);
  EXPECT_EQ(on_gpu->weight_bytes() * 2, on_cpu->weight_bytes());  // bf16 vs f32, same tensors
}

}  // namespace
}  // namespace paradit
