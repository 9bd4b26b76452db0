// The parallel VAE on GPUs: the split GroupNorm ops (group_norm_sums, group_norm_apply) of the CUDA backend
// against the CPU backend on the same bf16 values, bands of one image summed and applied against a whole-image
// group_norm; then decode_parallel over NCCL on every GPU count up to the machine's (1 rank included) against
// the CPU serial decode, and the FLUX VAE's peak memory per GPU at a large image on 1 GPU and on all of them.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "gpu_pair.h"
#include "gpu_ranks.h"
#include "paradit/backend/cuda_backend.h"
#include "paradit/models/vae.h"
#include "test_util.h"

namespace paradit {
namespace {

constexpr double kTol = 2e-2;  // relative L2, bf16 GPU vs fp32 reference
constexpr float kEps = 1e-6f;

using namespace test;  // Pair, Env, view, PD_GPU_ENV, GpuRanks, on_gpus

TEST(GroupNormSplitGpu, SumsMatchCpu) {
  PD_GPU_ENV(env);
  struct Case {
    int64_t B, H, W, C;
    int groups;
    float offset;
  };
  uint64_t seed = 3100;
  for (const Case c : {Case{2, 16, 16, 512, 32, 0.0f}, Case{1, 5, 7, 6, 3, 2.0f}, Case{1, 24, 20, 128, 32, 40.0f},
                       Case{1, 3, 3, 10, 5, 0.0f}}) {
    const std::string what = detail::concat("B ", c.B, " ", c.H, "x", c.W, " C ", c.C, " groups ", c.groups);
    const Pair x = env.from_host([&] {
      Tensor h = random_host({c.B, c.H, c.W, c.C}, seed++, 1.5f);
      for (int64_t i = 0; i < h.numel(); ++i) h.data_as<float>()[i] += c.offset;
      return h;
    }());
    // About 0, then about a shift near the mean (the same f32 values on both sides).
    const Pair sums = env.poisoned({2, c.B, c.groups}, DType::kF32);
    env.cpu->group_norm_sums(sums.cpu, x.cpu, c.groups, Tensor());
    env.gpu->group_norm_sums(sums.gpu, x.gpu, c.groups, Tensor());
    EXPECT_LE(env.rel(sums), 1e-4) << what;
    const Pair shift = env.from_host(random_host({c.B, c.groups}, seed++, 0.1f), DType::kF32);
    env.cpu->group_norm_sums(sums.cpu, x.cpu, c.groups, shift.cpu);
    env.gpu->group_norm_sums(sums.gpu, x.gpu, c.groups, shift.gpu);
    // Σ (x − m)² dominates the norm; Σ (x − m) may nearly cancel, so it is compared against it.
    EXPECT_LE(env.rel(view(sums, [](const Tensor& t) { return t.select(0, 1); })), 1e-4) << what;
    const Tensor s1_cpu = env.cpu->download_f32(sums.cpu.select(0, 0));
    const Tensor s1_gpu = env.gpu->download_f32(sums.gpu.select(0, 0));
    const Tensor s2_cpu = env.cpu->download_f32(sums.cpu.select(0, 1));
    for (int64_t i = 0; i < s1_cpu.numel(); ++i)
      EXPECT_LE(std::abs(s1_gpu.data_as<float>()[i] - s1_cpu.data_as<float>()[i]),
                1e-4 * std::sqrt(double(c.H * c.W * (c.C / c.groups)) * s2_cpu.data_as<float>()[i]))
          << what;
  }
  // An empty band adds nothing.
  const Pair sums = env.poisoned({2, 1, 4}, DType::kF32);
  env.gpu->group_norm_sums(sums.gpu, env.gpu->empty({1, 0, 5, 8}), 4, Tensor());
  const Tensor z = env.gpu->download_f32(sums.gpu);
  for (int64_t i = 0; i < z.numel(); ++i) EXPECT_EQ(z.data_as<float>()[i], 0.0f);
}

// Bands of one image: sums added on the host, then each band normalised into the interior of a padded buffer
// (as the parallel VAE does), against the CPU's whole-image group_norm.
TEST(GroupNormSplitGpu, BandsEqualWholeImageGroupNorm) {
  PD_GPU_ENV(env);
  const int64_t B = 2, H = 13, W = 9, C = 256;
  const int G = 32;
  uint64_t seed = 3200;
  const Pair x = env.input({B, H, W, C}, seed++, 1.5f);
  const Pair w = env.input({C}, seed++), b = env.input({C}, seed++);
  const Tensor want = poisoned_host({B, H, W, C});
  env.cpu->group_norm(want, x.cpu, w.cpu, b.cpu, G, kEps, /*silu=*/true);

  const int64_t cuts[] = {0, 5, 5, 10, 13};
  const double count = double(H * W * (C / G));
  Backend& gpu = *env.gpu;
  const auto total = [&](const Tensor& shift) {
    Tensor sum = gpu.empty({2, B, G}, DType::kF32);
    gpu.fill(sum, 0.0f);
    for (int i = 0; i + 1 < 5; ++i) {
      Tensor part = gpu.empty({2, B, G}, DType::kF32);
      gpu.group_norm_sums(part, x.gpu.slice(1, cuts[i], cuts[i + 1] - cuts[i]), G, shift);
      gpu.axpby(sum, sum, 1.0f, part, 1.0f);
    }
    return sum;
  };
  const Tensor first = total(Tensor());
  const Tensor shift = gpu.empty({B, G}, DType::kF32);
  gpu.axpby(shift, first.select(0, 0), float(1.0 / count), first.select(0, 0), 0.0f);
  const Tensor second = total(shift);
  const Pair padded = env.poisoned({B, H + 2, W + 2, C});
  const Tensor interior = padded.gpu.slice(1, 1, H).slice(2, 1, W);
  for (int i = 0; i + 1 < 5; ++i) {
    const int64_t n = cuts[i + 1] - cuts[i];
    gpu.group_norm_apply(interior.slice(1, cuts[i], n), x.gpu.slice(1, cuts[i], n), second, shift, count, w.gpu,
                         b.gpu, G, kEps, /*silu=*/true);
  }
  const double e = rel_l2(gpu.download_f32(interior), want);
  std::printf("    rel L2 %.2e  bands of [%lld, %lld, %lld, %lld]\n", e, (long long)B, (long long)H, (long long)W,
              (long long)C);
  EXPECT_LE(e, kTol);
  EXPECT_EQ(env.nan_count(padded.gpu), padded.gpu.numel() - interior.numel()) << "wrote outside the interior";
  EXPECT_THROW(gpu.group_norm_apply(interior, x.gpu, second, shift, 0.0, w.gpu, b.gpu, G, kEps, true), Error);
  EXPECT_THROW(gpu.group_norm_sums(gpu.empty({2, B, G}), x.gpu, G, Tensor()), Error);  // bf16 sums
}

// ---- decode_parallel over NCCL ----

VaeConfig tiny_config() {
  VaeConfig c;
  c.block_out_channels = {32, 64, 64};
  c.layers_per_block = 1;
  c.norm_num_groups = 8;
  return c;
}

TEST(VaeParallelGpu, DecodeOnEveryGpuCountMatchesCpu) {
  std::string why;
  const int gpus = cuda_device_count(&why);
  if (gpus == 0) GTEST_SKIP() << "no usable GPU: " << why;
  // 13 latent rows: uneven for every P > 1; P = 1 runs the same code over a one-rank NCCL world.
  const Tensor latents = random_host({1, 16, 13, 10}, 5);
  auto cpu = create_cpu_backend();
  const Tensor want =
      cpu->download_f32(VaeDecoder::random(*cpu, tiny_config(), 3)->decode(cpu->upload(latents, DType::kF32)));
  for (int P = 1; P <= std::min(gpus, 8); ++P) {
    SCOPED_TRACE("P " + std::to_string(P));
    GpuRanks g = gpu_ranks(P, &why);
    if (g.comms.empty()) GTEST_SKIP() << why;
    Tensor got;
    on_gpus(g, [&](int rank, Backend& be, Communicator& c) {
      auto vae = VaeDecoder::random(be, tiny_config(), 3);
      const Tensor y = vae->decode_parallel(be.upload(latents, DType::kF32), c);
      if (rank == 0) got = be.download_f32(y);
    });
    ASSERT_EQ(got.shape(), want.shape());
    const double e = rel_l2(got, want);
    std::printf("    P %d: rel L2 %.2e\n", P, e);
    EXPECT_LE(e, kTol);
  }
}

// The point of it all: the FLUX VAE at a large image. Peak memory per GPU on 1 GPU and on every GPU (at most
// 4), at 2048² and at PARADIT_VAE_PARALLEL_SIZE (default 4096).
TEST(VaeParallelGpu, FluxVaePeakMemoryFallsWithGpus) {
  std::string why;
  const int gpus = std::min(cuda_device_count(&why), 4);
  if (gpus < 2) GTEST_SKIP() << "needs 2 GPUs: " << why;
  const char* env_size = std::getenv("PARADIT_VAE_PARALLEL_SIZE");
  const int64_t big = env_size ? std::atoll(env_size) : 4096;
  const auto peak = [&](int P, int64_t size) {
    GpuRanks g = gpu_ranks(P, &why);
    std::vector<size_t> peaks(static_cast<size_t>(P));
    const Tensor latents = random_host({1, 16, size / 8, size / 8}, 9);
    on_gpus(g, [&](int rank, Backend& be, Communicator& c) {
      auto vae = VaeDecoder::random(be, VaeConfig::flux(), 1);
      const Tensor z = be.upload(latents, DType::kF32);
      CudaBackend& cb = *as_cuda_backend(be);
      be.synchronize();
      const size_t before = cb.memory_stats().in_use;
      cb.reset_peak();
      const auto start = std::chrono::steady_clock::now();
      const Tensor y = vae->decode_parallel(z, c);
      be.synchronize();
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      peaks[size_t(rank)] = cb.memory_stats().peak_in_use - before;
      if (rank == 0)
        std::printf("    FLUX VAE %lldx%lld on %d GPU(s): %.2f s, rank 0 peak %.2f GiB\n", (long long)size,
                    (long long)size, P, s, double(peaks[0]) / (1 << 30));
    });
    return *std::max_element(peaks.begin(), peaks.end());
  };
  const size_t one = peak(1, 2048), many = peak(gpus, 2048);
  std::printf("    2048²: peak per GPU %.2f GiB on 1, %.2f GiB on %d\n", double(one) / (1 << 30),
              double(many) / (1 << 30), gpus);
  EXPECT_LT(double(many), double(one) * (1.5 / gpus));
  // The large image on one GPU too: by scaling 2048²'s 5 GiB, about 20 GiB at 4096² — what an 80 GB card holds but
  // a 24 GB one beside the transformer would not.
  const size_t large_one = peak(1, big), large = peak(gpus, big);
  std::printf("    %lld²: peak per GPU %.2f GiB on 1, %.2f GiB on %d\n", (long long)big, double(large_one) / (1 << 30),
              double(large) / (1 << 30), gpus);
  EXPECT_LT(double(large), double(large_one) * (1.5 / gpus));
}

// Warm decodes (plans built by a first one) of the FLUX VAE at 2048², synchronous and stream-ordered (the
// backend's stream waits for each halo exchange and GroupNorm all-reduce, the host does not): the same image both
// ways, and the time of each printed for 1 GPU and for all of them (at most 4).
TEST(VaeParallelGpu, StreamOrderedDecodeGivesTheSameImage) {
  std::string why;
  const int gpus = std::min(cuda_device_count(&why), 4);
  if (gpus == 0) GTEST_SKIP() << "no usable GPU: " << why;
  const Tensor latents = random_host({1, 16, 256, 256}, 11);
  for (int P : gpus > 1 ? std::vector<int>{1, gpus} : std::vector<int>{1}) {
    SCOPED_TRACE("P " + std::to_string(P));
    GpuRanks g = gpu_ranks(P, &why);
    if (g.comms.empty()) GTEST_SKIP() << why;
    Tensor synchronous, ordered;
    double sync_s = 0, ordered_s = 0;
    on_gpus(g, [&](int rank, Backend& be, Communicator& c) {
      auto vae = VaeDecoder::random(be, VaeConfig::flux(), 1);
      const Tensor z = be.upload(latents, DType::kF32);
      (void)vae->decode_parallel(z, c);  // plans
      const auto timed = [&](bool stream_ordered) {
        c.set_stream_ordered(stream_ordered);
        c.barrier();
        const auto start = std::chrono::steady_clock::now();
        Tensor y = vae->decode_parallel(z, c);
        c.set_stream_ordered(false);  // waits for what is in flight
        be.synchronize();
        return std::pair{std::move(y), std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()};
      };
      auto [a, ta] = timed(false);
      auto [b, tb] = timed(true);
      if (rank == 0) {
        synchronous = be.download_f32(a);
        ordered = be.download_f32(b);
        sync_s = ta;
        ordered_s = tb;
      }
    });
    std::printf("    FLUX VAE 2048x2048 warm on %d GPU(s): %.1f ms synchronous, %.1f ms stream-ordered\n", P,
                sync_s * 1e3, ordered_s * 1e3);
    ASSERT_EQ(ordered.shape(), synchronous.shape());
    EXPECT_EQ(rel_l2(ordered, synchronous), 0.0);
  }
}

}  // namespace
}  // namespace paradit
