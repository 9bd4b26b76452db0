// The parallel VAE decode (VaeDecoder::decode_parallel) on CPU ranks (threads, in-process communicator, one
// 1-thread CPU backend and decoder each) against the serial decode of the same decoder: P = 1..8 over latent
// heights that P does and does not divide, heights below P (ranks without rows), non-square sizes, a batch,
// random VAEs with one and with three upsamplings, post_quant_conv, and the diffusers fixture VAE; the 8-bit
// image; who receives the result. The split GroupNorm ops against group_norm. Peak memory per rank falls with P.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <vector>

#include "paradit/comm/in_process.h"
#include "paradit/core/allocator.h"
#include "paradit/io/safetensors.h"
#include "paradit/models/vae.h"
#include "test_util.h"

namespace paradit {
namespace {

constexpr double kTol = 1e-5;  // parallel vs serial in fp32 (DESIGN.md)
constexpr int kPixelTol = 1;   // 8-bit levels

struct Model {
  const char* name;
  VaeConfig config;
  std::string fixture;  // a diffusers VAE folder, or empty for VaeDecoder::random(config, 7)
};

VaeConfig tiny(std::vector<int> widths, int latent_channels, bool post_quant) {
  VaeConfig c;
  c.block_out_channels = std::move(widths);
  c.layers_per_block = 1;
  c.norm_num_groups = 8;
  c.latent_channels = latent_channels;
  c.use_post_quant_conv = post_quant;
  return c;
}

// Two blocks (one upsampling), as the brief's tiny config; three blocks (two upsamplings) with post_quant_conv.
const Model kTwoBlocks{"random {32, 64}", tiny({32, 64}, 16, false), ""};
const Model kThreeBlocks{"random {16, 32, 32} post_quant", tiny({16, 32, 32}, 4, true), ""};

std::string fixture_vae() { return test::fixtures_dir() + "/vae/flux_tiny/vae"; }

std::unique_ptr<VaeDecoder> make(Backend& be, const Model& m) {
  return m.fixture.empty() ? VaeDecoder::random(be, m.config, 7) : VaeDecoder::load(be, m.fixture);
}

// Each rank's result of decode_parallel(latents) over P ranks (undefined where none came back).
std::vector<Tensor> decode_on_ranks(const Model& m, const Tensor& latents, int P, const VaeParallelOptions& o) {
  std::vector<Tensor> got(static_cast<size_t>(P));
  InProcessGroup group(P);
  const auto outcomes = run_ranks(group, [&](Communicator& c) {
    auto be = create_cpu_backend(1);
    auto vae = make(*be, m);
    const Tensor y = vae->decode_parallel(be->upload(latents, DType::kF32), c, o);
    if (y.defined()) got[size_t(c.rank())] = be->download_f32(y);
  });
  for (size_t r = 0; r < outcomes.size(); ++r) EXPECT_TRUE(outcomes[r].ok()) << "rank " << r << ": " << outcomes[r].to_string();
  return got;
}

Tensor serial_decode(const Model& m, const Tensor& latents, LatentLayout layout) {
  auto be = create_cpu_backend(1);
  auto vae = make(*be, m);
  VaeDecodeOptions o;
  o.layout = layout;
  return be->download_f32(vae->decode(be->upload(latents, DType::kF32), o));
}

// Every rank (root −1) gets the serial result.
void check(const Model& m, int64_t batch, int64_t h, int64_t w, const std::vector<int>& ranks) {
  const int64_t C = m.fixture.empty() ? m.config.latent_channels : 16;
  const Tensor latents = test::random_host({batch, C, h, w}, uint64_t(h * 131 + w));
  const Tensor want = serial_decode(m, latents, LatentLayout::kNCHW);
  for (int P : ranks) {
    SCOPED_TRACE(std::string(m.name) + " latents " + shape_str(latents.shape()) + " P " + std::to_string(P));
    VaeParallelOptions o;
    o.root = -1;
    const std::vector<Tensor> got = decode_on_ranks(m, latents, P, o);
    for (int r = 0; r < P; ++r) {
      ASSERT_TRUE(got[size_t(r)].defined()) << "rank " << r;
      ASSERT_EQ(got[size_t(r)].shape(), want.shape());
      EXPECT_LE(test::rel_l2(got[size_t(r)], want), kTol) << "rank " << r;
    }
  }
}

TEST(VaeParallel, EveryRankCountMatchesSerial) {
  // 13 rows: uneven for every P > 1; 6 × 11: non-square, even for P = 2, 3, 6.
  for (auto [h, w] : {std::pair<int64_t, int64_t>{13, 5}, {6, 11}})
    check(kTwoBlocks, 1, h, w, {1, 2, 3, 4, 5, 6, 7, 8});
}

TEST(VaeParallel, FewerLatentRowsThanRanks) {
  // 3 rows over up to 8 ranks, 1 row over 2 and 5: the last ranks own no rows and only join the collectives.
  check(kTwoBlocks, 1, 3, 4, {4, 5, 7, 8});
  check(kTwoBlocks, 1, 1, 6, {2, 5});
}

TEST(VaeParallel, TwoUpsamplingsPostQuantConvAndABatch) {
  check(kThreeBlocks, 2, 7, 3, {1, 2, 3, 5, 8});
}

TEST(VaeParallel, FixtureVae) {
  // The diffusers-converted tiny FLUX VAE: four blocks (three upsamplings), 4 GroupNorm groups, its own latents.
  const Model fixture{"fixture flux_tiny", VaeConfig(), fixture_vae()};
  const SafetensorsFile io = SafetensorsFile::open(test::fixtures_dir() + "/vae/flux_tiny/io.safetensors");
  const Tensor latents = test::to_contiguous_f32(io.get("latents"));
  const Tensor want = serial_decode(fixture, latents, LatentLayout::kNCHW);
  for (int P : {2, 3, 7}) {
    SCOPED_TRACE("P " + std::to_string(P));
    const std::vector<Tensor> got = decode_on_ranks(fixture, latents, P, {});
    ASSERT_TRUE(got[0].defined());
    EXPECT_LE(test::rel_l2(got[0], want), kTol);
  }
  check(fixture, 1, 5, 3, {2, 4, 6});
}

TEST(VaeParallel, OnlyTheRootReceivesAndNhwcLatentsWork) {
  const Tensor nchw = test::random_host({1, 16, 9, 4}, 3);
  const Tensor nhwc = test::to_contiguous_f32(nchw.transpose(1, 2).transpose(2, 3));
  const Tensor want = serial_decode(kTwoBlocks, nchw, LatentLayout::kNCHW);
  VaeParallelOptions o;
  o.layout = LatentLayout::kNHWC;
  o.root = 2;
  const std::vector<Tensor> got = decode_on_ranks(kTwoBlocks, nhwc, 4, o);
  for (int r = 0; r < 4; ++r) EXPECT_EQ(got[size_t(r)].defined(), r == 2) << "rank " << r;
  ASSERT_TRUE(got[2].defined());
  EXPECT_LE(test::rel_l2(got[2], want), kTol);
}

TEST(VaeParallel, Rgb8ImagesMatchSerial) {
  const Tensor latents = test::random_host({2, 16, 5, 7}, 9);
  auto be = create_cpu_backend(1);
  auto vae = make(*be, kTwoBlocks);
  const std::vector<Rgb8Image> want = vae->decode_to_rgb8(be->upload(latents, DType::kF32));
  for (int P : {3, 6}) {
    SCOPED_TRACE("P " + std::to_string(P));
    std::vector<std::vector<Rgb8Image>> got(static_cast<size_t>(P));
    InProcessGroup group(P);
    const auto outcomes = run_ranks(group, [&](Communicator& c) {
      auto rb = create_cpu_backend(1);
      auto rv = make(*rb, kTwoBlocks);
      got[size_t(c.rank())] = rv->decode_to_rgb8_parallel(rb->upload(latents, DType::kF32), c);
    });
    ASSERT_TRUE(first_failure(outcomes).ok()) << first_failure(outcomes).to_string();
    for (int r = 1; r < P; ++r) EXPECT_TRUE(got[size_t(r)].empty()) << "rank " << r;
    ASSERT_EQ(got[0].size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) {
      ASSERT_EQ(got[0][i].pixels.size(), want[i].pixels.size());
      EXPECT_EQ(got[0][i].height, want[i].height);
      EXPECT_EQ(got[0][i].width, want[i].width);
      int worst = 0;
      for (size_t p = 0; p < want[i].pixels.size(); ++p)
        worst = std::max(worst, std::abs(int(got[0][i].pixels[p]) - int(want[i].pixels[p])));
      EXPECT_LE(worst, kPixelTol) << "image " << i;
    }
  }
}

TEST(VaeParallel, RefusesABadRoot) {
  InProcessGroup group(2);
  const auto outcomes = run_ranks(group, [&](Communicator& c) {
    auto be = create_cpu_backend(1);
    auto vae = make(*be, kTwoBlocks);
    VaeParallelOptions o;
    o.root = 2;
    vae->decode_parallel(be->upload(test::random_host({1, 16, 4, 4}, 1), DType::kF32), c, o);
  });
  EXPECT_EQ(first_failure(outcomes).code(), StatusCode::kInvalidArgument);
}

// ---- The split GroupNorm ops ----

TEST(GroupNormSplit, BandsSummedThenAppliedEqualGroupNorm) {
  auto be = create_cpu_backend(2);
  const int64_t B = 2, H = 11, W = 5, C = 24;
  const int G = 6;
  // An offset mean (|mean| ≫ std) is where sums without a shift would cancel.
  Tensor x = test::random_host({B, H, W, C}, 21, 0.5f);
  for (int64_t i = 0; i < x.numel(); ++i) x.data_as<float>()[i] += 40.0f;
  const Tensor weight = test::random_host({C}, 22), bias = test::random_host({C}, 23);
  const Tensor want = test::poisoned_host({B, H, W, C});
  be->group_norm(want, x, weight, bias, G, 1e-6f, /*silu=*/true);

  const int64_t cuts[] = {0, 4, 4, 9, 11};  // bands of 4, 0, 5 and 2 rows
  const double count = double(H * W * (C / G));
  const auto total = [&](const Tensor& shift) {
    Tensor sum = test::poisoned_host({2, B, G});
    be->fill(sum, 0.0f);
    for (int i = 0; i + 1 < 5; ++i) {
      const Tensor part = test::poisoned_host({2, B, G});
      be->group_norm_sums(part, x.slice(1, cuts[i], cuts[i + 1] - cuts[i]), G, shift);
      be->add(sum, sum, part);
    }
    return sum;
  };
  const Tensor first = total(Tensor());
  const Tensor shift = test::poisoned_host({B, G});
  be->axpby(shift, first.select(0, 0), float(1.0 / count), first.select(0, 0), 0.0f);
  const Tensor second = total(shift);
  const Tensor got = test::poisoned_host({B, H, W, C});
  for (int i = 0; i + 1 < 5; ++i) {
    const int64_t n = cuts[i + 1] - cuts[i];
    be->group_norm_apply(got.slice(1, cuts[i], n), x.slice(1, cuts[i], n), second, shift, count, weight, bias, G,
                         1e-6f, /*silu=*/true);
  }
  EXPECT_LE(test::rel_l2(got, want), 1e-6);
  // In place, without SiLU, against group_norm.
  const Tensor plain = test::poisoned_host({B, H, W, C});
  be->group_norm(plain, x, weight, bias, G, 1e-6f, /*silu=*/false);
  const Tensor y = test::to_contiguous_f32(x);
  be->group_norm_apply(y, y, second, shift, count, weight, bias, G, 1e-6f, /*silu=*/false);
  EXPECT_LE(test::rel_l2(y, plain), 1e-6);
}

TEST(GroupNormSplit, SumsAreExactAndAnEmptyBandGivesZeros) {
  auto be = create_cpu_backend(1);
  const Tensor x = test::random_host({1, 3, 2, 4}, 5);
  const Tensor shift = test::random_host({1, 2}, 6);
  const Tensor sums = test::poisoned_host({2, 1, 2});
  be->group_norm_sums(sums, x, 2, shift);
  for (int g = 0; g < 2; ++g) {
    double s1 = 0, s2 = 0;
    for (int p = 0; p < 6; ++p)
      for (int c = 2 * g; c < 2 * g + 2; ++c) {
        const double d = double(x.data_as<float>()[p * 4 + c]) - shift.data_as<float>()[g];
        s1 += d;
        s2 += d * d;
      }
    EXPECT_NEAR(sums.data_as<float>()[g], s1, 1e-5 * (1 + std::abs(s1)));
    EXPECT_NEAR(sums.data_as<float>()[2 + g], s2, 1e-5 * s2);
  }
  be->group_norm_sums(sums, x.slice(1, 0, 0), 2, Tensor());
  for (int i = 0; i < 4; ++i) EXPECT_EQ(sums.data_as<float>()[i], 0.0f);
  EXPECT_THROW(be->group_norm_sums(sums, x, 3, Tensor()), Error);                        // 3 ∤ 4 channels
  EXPECT_THROW(be->group_norm_sums(test::poisoned_host({1, 2}), x, 2, Tensor()), Error);  // not [2, B, G]
  const Tensor affine = test::random_host({4}, 7), y = test::poisoned_host({1, 3, 2, 4});
  EXPECT_THROW(be->group_norm_apply(y, x, sums, Tensor(), 0.0, affine, affine, 2, 1e-6f, false), Error);  // count 0
}

// ---- Memory ----

// Host memory that counts its bytes exactly (a CachingAllocator would round them to 2 MiB), so that its
// high-water mark measures a CPU rank's tensors.
class CountingAllocator final : public Allocator {
 public:
  Device device() const override { return Device::cpu(); }
  void* allocate(size_t bytes) override {
    void* p = cpu_allocator().allocate(bytes);
    std::lock_guard<std::mutex> lock(mu_);
    sizes_[p] = bytes;
    in_use_ += bytes;
    peak_ = std::max(peak_, in_use_);
    return p;
  }
  void deallocate(void* p) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      in_use_ -= sizes_.at(p);
      sizes_.erase(p);
    }
    cpu_allocator().deallocate(p);
  }
  size_t in_use() const { return in_use_; }
  size_t peak() const { return peak_; }
  void reset_peak() { peak_ = in_use_; }

 private:
  std::mutex mu_;
  std::map<void*, size_t> sizes_;
  size_t in_use_ = 0, peak_ = 0;
};

// The most any rank's tensors grew to during decode_parallel (root 0), in bytes above what it held before.
size_t peak_per_rank(const Model& m, const Tensor& latents, int P) {
  std::vector<size_t> peak(static_cast<size_t>(P));
  // Outside the ranks: the in-process transport may free a rank's staging buffers from a peer's thread after the
  // rank has returned.
  std::vector<CountingAllocator> allocators(static_cast<size_t>(P));
  InProcessGroup group(P);
  const auto outcomes = run_ranks(group, [&](Communicator& c) {
    CountingAllocator& alloc = allocators[size_t(c.rank())];
    auto be = create_cpu_backend(1, alloc);
    auto vae = make(*be, m);
    const Tensor z = be->upload(latents, DType::kF32);
    const size_t before = alloc.in_use();
    alloc.reset_peak();
    const Tensor y = vae->decode_parallel(z, c);
    peak[size_t(c.rank())] = alloc.peak() - before;
  });
  EXPECT_TRUE(first_failure(outcomes).ok()) << first_failure(outcomes).to_string();
  return *std::max_element(peak.begin(), peak.end());
}

void report_memory(const Model& m, int64_t h, int64_t w) {
  const Tensor latents = test::random_host({1, m.config.latent_channels, h, w}, 11);
  {
    CountingAllocator alloc;
    auto be = create_cpu_backend(1, alloc);
    auto vae = make(*be, m);
    const Tensor z = be->upload(latents, DType::kF32);
    const size_t before = alloc.in_use();
    alloc.reset_peak();
    const Tensor y = vae->decode(z);
    std::printf("    %s, serial decode: peak %.2f MiB\n", m.name, double(alloc.peak() - before) / (1 << 20));
  }
  std::vector<size_t> peaks;
  for (int P : {1, 2, 4}) {
    peaks.push_back(peak_per_rank(m, latents, P));
    std::printf("    %s, %lldx%lld latents (%lldx%lld image), P = %d: peak %.2f MiB per rank\n", m.name,
                (long long)h, (long long)w, (long long)(h * m.config.scale_factor()),
                (long long)(w * m.config.scale_factor()), P, double(peaks.back()) / (1 << 20));
  }
  EXPECT_LT(peaks[1], peaks[0] * 0.65);
  EXPECT_LT(peaks[2], peaks[0] * 0.4);
}

// Three blocks, so that the full-resolution activations dominate as in real VAEs (the mid-block K/V, gathered
// whole on every rank, are 1/64 of a full-resolution activation in FLUX's VAE).
TEST(VaeParallelMemory, PeakPerRankFallsWithRanks) {
  report_memory({"random {32, 32, 64}", tiny({32, 32, 64}, 16, false), ""}, 48, 48);
}

// The FLUX.1 VAE's shapes (random weights) at a 256×256 image: minutes on a CPU, so run by hand
// (--gtest_also_run_disabled_tests).
TEST(VaeParallelMemory, DISABLED_FluxVaeAt256) {
  report_memory({"FLUX.1 VAE (random)", VaeConfig::flux(), ""}, 32, 32);
}

}  // namespace
}  // namespace paradit
