// The CUDA backend's text-encoder and VAE ops (axpby, mul, quick_gelu, embedding, layer_norm, attention_biased,
// conv2d, group_norm, upsample_nearest2x, to_rgb8), Ring attention's lse_merge, its GEMM attention path (head dims above cuDNN's 256, forced with
// PARADIT_CUDA_ATTENTION=gemm) and wide rms_norm rows, each against the CPU backend (fp32 reference) on the
// same inputs: host f32 values rounded to bf16 first, so both sides start from identical numbers. Outputs are
// poisoned with NaN first; strided views check that nothing outside them is written.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "paradit/backend/cuda_backend.h"
#include "gpu_pair.h"
#include "test_util.h"

namespace paradit {
namespace {

constexpr double kTol = 2e-2;  // relative L2, bf16 GPU vs fp32 reference
constexpr float kEps = 1e-6f;

using namespace test;  // Pair, Env, view, chunk, PD_GPU_ENV

// A CUDA backend created with environment variable `name` set to `value` (restored afterwards): the backend
// reads the PARADIT_CUDA_* switches when it is created.
std::unique_ptr<Backend> cuda_backend_with_env(const char* name, const char* value) {
  const char* old = std::getenv(name);
  const std::string saved = old ? old : "";
  setenv(name, value, 1);
  std::unique_ptr<Backend> b;
  try {
    b = create_cuda_backend(0);
  } catch (...) {
    old ? setenv(name, saved.c_str(), 1) : unsetenv(name);
    throw;
  }
  old ? setenv(name, saved.c_str(), 1) : unsetenv(name);
  return b;
}

// ---------------------------------------------------------------------------------------------------------------
// Elementwise

TEST(CudaOpsExt, QuickGeluAndMulMatchCpu) {
  PD_GPU_ENV(env);
  uint64_t seed = 1000;
  for (DType dt : {DType::kBF16, DType::kF32}) {
    for (const int64_t D : {int64_t(256), int64_t(100)}) {  // vectorised and scalar paths
      const std::string what = detail::concat(dtype_name(dt), " D ", D);
      const Pair a = env.input({2, 15, D}, seed++, 3.0f, dt), b = env.input({2, 15, D}, seed++, 2.0f, dt);
      const Pair ybuf = env.poisoned({2, 15, 2 * D}, dt);
      const Pair y = view(ybuf, chunk(1, D));
      env.cpu->quick_gelu(y.cpu, a.cpu);
      env.gpu->quick_gelu(y.gpu, a.gpu);
      EXPECT_LE(env.rel(y), kTol) << "quick_gelu " << what;
      EXPECT_EQ(env.nan_count(ybuf.gpu), ybuf.gpu.numel() - y.gpu.numel()) << what;
      env.cpu->mul(y.cpu, a.cpu, b.cpu);
      env.gpu->mul(y.gpu, a.gpu, b.gpu);
      EXPECT_LE(env.rel(y), kTol) << "mul " << what;
      // In place, as T5's gated FFN does (gate = gate ⊙ lin).
      env.cpu->mul(a.cpu, a.cpu, b.cpu);
      env.gpu->mul(a.gpu, a.gpu, b.gpu);
      EXPECT_LE(env.rel(a), kTol) << "mul in place " << what;
      env.cpu->quick_gelu(b.cpu, b.cpu);
      env.gpu->quick_gelu(b.gpu, b.gpu);
      EXPECT_LE(env.rel(b), kTol) << "quick_gelu in place " << what;
    }
  }
  // Large negative inputs give −0, not NaN.
  const Pair big = env.from_host(test::random_host({4, 64}, seed++, 200.0f));
  const Pair out = env.poisoned({4, 64});
  env.cpu->quick_gelu(out.cpu, big.cpu);
  env.gpu->quick_gelu(out.gpu, big.gpu);
  EXPECT_EQ(env.nan_count(out.gpu), 0);
  EXPECT_LE(env.rel(out), kTol) << "quick_gelu of large inputs";
}

TEST(CudaOpsExt, AxpbyMixesDtypes) {
  PD_GPU_ENV(env);
  uint64_t seed = 1100;
  struct Case {
    DType y, a, b;
    bool alias_a;  // y is a itself (the sampler's x = x + dt·v)
  };
  for (const Case c :
       {Case{DType::kF32, DType::kF32, DType::kBF16, true}, Case{DType::kF32, DType::kBF16, DType::kBF16, false},
        Case{DType::kBF16, DType::kBF16, DType::kF16, false}, Case{DType::kF16, DType::kF32, DType::kF16, false},
        Case{DType::kBF16, DType::kBF16, DType::kBF16, true}}) {
    for (const int64_t D : {int64_t(64), int64_t(37)}) {
      const std::string what = detail::concat("y ", dtype_name(c.y), " a ", dtype_name(c.a), " b ", dtype_name(c.b),
                                              c.alias_a ? " (y = a)" : "", " D ", D);
      const Pair a = env.input({2, 9, D}, seed++, 1.0f, c.a);
      const Pair b = env.input({2, 9, D}, seed++, 1.0f, c.b);
      // y: columns [D, 2D) of a wider poisoned buffer, or a itself.
      const Pair ybuf = c.alias_a ? a : env.poisoned({2, 9, 2 * D}, c.y);
      const Pair y = c.alias_a ? a : view(ybuf, chunk(1, D));
      env.cpu->axpby(y.cpu, a.cpu, 0.75f, b.cpu, -1.5f);
      env.gpu->axpby(y.gpu, a.gpu, 0.75f, b.gpu, -1.5f);
      EXPECT_LE(env.rel(y), 1e-2) << what;
      if (!c.alias_a) EXPECT_EQ(env.nan_count(ybuf.gpu), ybuf.gpu.numel() - y.gpu.numel()) << what;
    }
  }
  // The exact f32 case: bit-identical up to the CPU's own rounding.
  const Pair x = env.input({1, 4096}, seed++, 1.0f, DType::kF32), v = env.input({1, 4096}, seed++, 1.0f, DType::kF32);
  env.cpu->axpby(x.cpu, x.cpu, 1.0f, v.cpu, 0.03125f);
  env.gpu->axpby(x.gpu, x.gpu, 1.0f, v.gpu, 0.03125f);
  EXPECT_LE(env.max_abs(x), 1e-6);
}

// Region timing on the GPU: events on the stream time what the GPU did between marks — ten 8192×4096×4096 GEMMs take
// longer than one small fill — with counts per name, and the host does not wait at a mark.
TEST(CudaOpsExt, RegionTimingTimesTheStream) {
  PD_GPU_ENV(env);
  Backend& gpu = *env.gpu;
  const Tensor x = gpu.empty({1, 8192, 4096}), w = gpu.empty({4096, 4096}), y = gpu.empty({1, 8192, 4096});
  gpu.fill_random(x, 1, 1.0f);
  gpu.fill_random(w, 2, 0.02f);
  gpu.linear(y, x, w, Tensor(), Epilogue::kNone);  // plans
  gpu.synchronize();
  gpu.set_region_timing(true);
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 2; ++i) {
    gpu.mark_region("gemms");
    for (int j = 0; j < 10; ++j) gpu.linear(y, x, w, Tensor(), Epilogue::kNone);
    gpu.mark_region("fill");
    gpu.fill(y.slice(1, 0, 1), 0.0f);
  }
  const double host_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  const std::vector<RegionTime> t = gpu.take_region_times();
  gpu.set_region_timing(false);
  ASSERT_EQ(t.size(), 2u);
  EXPECT_EQ(t[0].name, "gemms");
  EXPECT_EQ(t[0].count, 2);
  EXPECT_EQ(t[1].name, "fill");
  EXPECT_EQ(t[1].count, 2);
  EXPECT_GT(t[0].ms, 10 * t[1].ms);
  EXPECT_LT(host_ms, t[0].ms) << "the host waited at a mark";  // 20 × 275 GFLOP queue faster than they run
  std::printf("    20 GEMMs 8192x4096x4096: %.2f ms of GPU time, %.2f ms to queue them\n", t[0].ms, host_ms);
}

// ---------------------------------------------------------------------------------------------------------------
// Text encoders

TEST(CudaOpsExt, EmbeddingGathersRows) {
  PD_GPU_ENV(env);
  uint64_t seed = 1200;
  for (const int64_t D : {int64_t(768), int64_t(72), int64_t(7)}) {  // 16-byte, 16-byte, 2-byte units
    const int64_t V = 50, B = 2, S = 11;
    const Pair table = env.input({V, D}, seed++);
    std::vector<int32_t> ids(size_t(B * S));
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t((i * 37 + 5) % size_t(V));
    ids[3] = 0;
    ids[4] = int32_t(V - 1);
    // out: columns [D, 2D) of a [B, S, 3D] buffer.
    const Pair buf = env.poisoned({B, S, 3 * D});
    const Pair out = view(buf, chunk(1, D));
    env.cpu->embedding(out.cpu, table.cpu, ids);
    env.gpu->embedding(out.gpu, table.gpu, ids);
    EXPECT_EQ(env.max_abs(out), 0.0) << "D " << D;
    EXPECT_EQ(env.nan_count(buf.gpu), buf.gpu.numel() - out.gpu.numel()) << "D " << D;
  }
  // A bad id is refused before anything is written, naming it.
  const Pair table = env.input({10, 16}, seed++);
  const Pair out = env.poisoned({1, 3, 16});
  const std::vector<int32_t> bad = {1, 10, 2};
  EXPECT_EQ(code_of([&] { env.gpu->embedding(out.gpu, table.gpu, bad); }), StatusCode::kInvalidArgument);
  try {
    env.gpu->embedding(out.gpu, table.gpu, bad);
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("position 1"), std::string::npos) << e.what();
  }
  EXPECT_EQ(env.nan_count(out.gpu), out.gpu.numel());
}

TEST(CudaOpsExt, LayerNormMatchesCpu) {
  PD_GPU_ENV(env);
  struct Case {
    int64_t B, S, D;
    bool bias;
  };
  uint64_t seed = 1300;
  for (const Case c :
       {Case{2, 77, 768, true}, Case{1, 77, 768, false}, Case{2, 7, 100, true}, Case{1, 3, 4096, true}}) {
    const std::string what = detail::concat("B ", c.B, " S ", c.S, " D ", c.D, c.bias ? " bias" : "");
    // x: rows [2, 2 + S) of a longer sequence, offset by 3 so that the mean matters.
    const Pair zbuf = env.from_host([&] {
      Tensor h = test::random_host({c.B, c.S + 4, c.D}, seed++, 2.0f);
      for (int64_t i = 0; i < h.numel(); ++i) h.data_as<float>()[i] += 3.0f;
      return h;
    }());
    const Pair x = view(zbuf, [&](const Tensor& t) { return t.slice(1, 2, c.S); });
    const Pair w = env.input({c.D}, seed++, 1.0f);
    const Pair b = c.bias ? env.input({c.D}, seed++, 1.0f) : Pair{};
    const Pair y = env.poisoned({c.B, c.S, c.D});
    env.cpu->layer_norm(y.cpu, x.cpu, w.cpu, b.cpu, 1e-5f);
    env.gpu->layer_norm(y.gpu, x.gpu, w.gpu, b.gpu, 1e-5f);
    EXPECT_LE(env.rel(y), kTol) << what;
    EXPECT_EQ(env.nan_count(y.gpu), 0) << what;
  }
  // 2-D, in place.
  const Pair x = env.input({9, 512}, seed++, 2.0f);
  const Pair w = env.input({512}, seed++), b = env.input({512}, seed++);
  env.cpu->layer_norm(x.cpu, x.cpu, w.cpu, b.cpu, 1e-5f);
  env.gpu->layer_norm(x.gpu, x.gpu, w.gpu, b.gpu, 1e-5f);
  EXPECT_LE(env.rel(x), kTol) << "2-D in place";
}

TEST(CudaOpsExt, RmsNormWideRows) {
  PD_GPU_ENV(env);
  uint64_t seed = 1400;
  // T5's T5LayerNorm: [B, S, D] rows as [B, S, 1, D] "heads", D = 4096, no RoPE; out of place and in place.
  {
    const int64_t B = 2, S = 7, D = 4096;
    const Pair x = env.input({B, S, D}, seed++, 3.0f);
    const Pair w = env.input({D}, seed++);
    const Pair y = env.poisoned({B, S, D});
    const auto as4 = [&](const Tensor& t) { return t.unflatten(2, 1, D); };
    env.cpu->rms_norm_rope(as4(y.cpu), as4(x.cpu), w.cpu, Tensor(), Tensor(), kEps);
    env.gpu->rms_norm_rope(as4(y.gpu), as4(x.gpu), w.gpu, Tensor(), Tensor(), kEps);
    EXPECT_LE(env.rel(y), kTol) << "T5 width 4096";
    EXPECT_EQ(env.nan_count(y.gpu), 0);
    env.cpu->rms_norm_rope(as4(x.cpu), as4(x.cpu), w.cpu, Tensor(), Tensor(), kEps);
    env.gpu->rms_norm_rope(as4(x.gpu), as4(x.gpu), w.gpu, Tensor(), Tensor(), kEps);
    EXPECT_LE(env.rel(x), kTol) << "T5 width 4096 in place";
  }
  struct Case {
    int64_t B, S, H, d;
    bool rope;
  };
  // Wide rows with RoPE (16-byte and 4-byte vectors), and an odd width (scalar).
  for (const Case c : {Case{1, 5, 2, 4096, true}, Case{1, 3, 1, 2050, true}, Case{2, 3, 1, 4097, false},
                       Case{1, 2, 1, 40000, false}}) {
    const std::string what = detail::concat("H ", c.H, " d ", c.d, c.rope ? " rope" : "");
    const Pair x = env.input({c.B, c.S, c.H, c.d}, seed++, 2.0f);
    const Pair w = env.input({c.d}, seed++);
    const Pair cos = c.rope ? env.input({c.S, c.d}, seed++, 1.0f, DType::kF32) : Pair{};
    const Pair sin = c.rope ? env.input({c.S, c.d}, seed++, 1.0f, DType::kF32) : Pair{};
    const Pair y = env.poisoned({c.B, c.S, c.H, c.d});
    env.cpu->rms_norm_rope(y.cpu, x.cpu, w.cpu, cos.cpu, sin.cpu, kEps);
    env.gpu->rms_norm_rope(y.gpu, x.gpu, w.gpu, cos.gpu, sin.gpu, kEps);
    EXPECT_LE(env.rel(y), kTol) << what;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Attention

struct AttnCase {
  const char* name;
  int64_t B, Sq, Skv, H, d;
  bool bias, causal;
  float bias_std;
};

// q/k/v as views into packed [B, S, 3D] buffers (k, v from a second buffer when Skv differs), out as columns
// [D, 2D) of a poisoned [B, Sq, 3D] buffer.
void run_biased_case(Env& env, const AttnCase& c, uint64_t seed) {
  const int64_t D = c.H * c.d;
  const Pair qkv = env.input({c.B, c.Sq, 3 * D}, seed++);
  const Pair kv = c.Skv == c.Sq ? qkv : env.input({c.B, c.Skv, 3 * D}, seed++);
  const auto heads = [&](int64_t i) { return [=](const Tensor& t) { return chunk(i, D)(t).unflatten(2, c.H, c.d); }; };
  const Pair q = view(qkv, heads(0)), k = view(kv, heads(1)), v = view(kv, heads(2));
  const Pair bias = c.bias ? env.input({c.H, c.Sq, c.Skv}, seed++, c.bias_std, DType::kF32) : Pair{};
  const Pair cat = env.poisoned({c.B, c.Sq, 3 * D});
  const Pair out = view(cat, heads(1));
  const float scale = c.bias ? 1.0f : float(1.0 / std::sqrt(double(c.d)));
  env.cpu->attention_biased(out.cpu, q.cpu, k.cpu, v.cpu, scale, bias.cpu, c.causal);
  env.gpu->attention_biased(out.gpu, q.gpu, k.gpu, v.gpu, scale, bias.gpu, c.causal);
  EXPECT_LE(env.rel(out), kTol) << c.name;
  EXPECT_EQ(env.nan_count(cat.gpu), cat.gpu.numel() - out.gpu.numel()) << c.name;
}

// Ring attention's merge on the GPU against the CPU's: 1, 3 and 16 blocks in bf16 or f32, out in f32 or bf16 (a
// strided view into a poisoned buffer), log-sum-exps of −∞ where a block had no keys, and rows where no block had.
TEST(CudaOpsExt, LseMergeMatchesCpu) {
  PD_GPU_ENV(env);
  const int64_t B = 2, S = 37, H = 3, d = 128;
  uint64_t seed = 900;
  for (const int n : {1, 3, 16})
    for (const DType block_dtype : {DType::kBF16, DType::kF32})
      for (const DType out_dtype : {DType::kF32, DType::kBF16}) {
        const std::string what = detail::concat(n, " blocks of ", dtype_name(block_dtype), " into ", dtype_name(out_dtype));
        std::vector<Pair> outs, lses;
        for (int j = 0; j < n; ++j) {
          Tensor lse_h = random_host({B, H, S}, seed++, 3.0f);
          // Block j has no keys for every (j + 2)-th row; row 0 of batch 0, head 0 has keys in no block.
          for (int64_t i = 0; i < lse_h.numel(); i += j + 2) lse_h.data_as<float>()[i] = -INFINITY;
          lses.push_back(env.from_host(lse_h, DType::kF32));
          outs.push_back(env.input({B, S, H, d}, seed++, 1.0f, block_dtype));
        }
        std::vector<Tensor> cpu_outs, gpu_outs, cpu_lses, gpu_lses;
        for (int j = 0; j < n; ++j) {
          cpu_outs.push_back(outs[size_t(j)].cpu);
          gpu_outs.push_back(outs[size_t(j)].gpu);
          cpu_lses.push_back(lses[size_t(j)].cpu);
          gpu_lses.push_back(lses[size_t(j)].gpu);
        }
        const Pair buffer = env.poisoned({B, S, H, 2 * d}, out_dtype);
        const Pair out = view(buffer, chunk(1, d));
        const Pair lse = env.poisoned({B, H, S}, DType::kF32);
        env.cpu->lse_merge(out.cpu, lse.cpu, cpu_outs, cpu_lses);
        env.gpu->lse_merge(out.gpu, lse.gpu, gpu_outs, gpu_lses);
        EXPECT_LE(env.rel(out), out_dtype == DType::kF32 ? 1e-5 : 1e-2) << what;
        EXPECT_EQ(env.nan_count(buffer.gpu), buffer.gpu.numel() - out.gpu.numel()) << what;
        const Tensor got = env.gpu->download_f32(lse.gpu), want = env.cpu->download_f32(lse.cpu);
        int64_t infinite = 0;
        for (int64_t i = 0; i < want.numel(); ++i) {
          const float g = got.data_as<float>()[i], w = want.data_as<float>()[i];
          if (std::isinf(w)) {
            ++infinite;
            EXPECT_EQ(g, w) << what << " " << i;
          } else {
            EXPECT_NEAR(g, w, 1e-5f * std::max(1.0f, std::fabs(w))) << what << " " << i;
          }
        }
        EXPECT_GT(infinite, 0) << what;  // the rows without keys were exercised
      }
}

TEST(CudaOpsExt, AttentionBiasedMatchesCpu) {
  PD_GPU_ENV(env);
  const AttnCase cases[] = {
      {"CLIP causal 77 tokens, 12 heads x 64", 2, 77, 77, 12, 64, false, true, 0.0f},
      {"T5-like bias, 40 tokens", 2, 40, 40, 8, 64, true, false, 2.0f},
      {"bias + causal, Sq != Skv", 1, 5, 9, 3, 32, true, true, 1.0f},
      {"odd head dim, bias", 1, 13, 13, 2, 20, true, false, 1.0f},
      {"no bias, no mask (plain attention)", 1, 33, 33, 2, 64, false, false, 0.0f},
  };
  uint64_t seed = 1500;
  for (const AttnCase& c : cases) {
    run_biased_case(env, c, seed);
    seed += 10;
  }

  // Fully masked rows: a bias of −∞ on every key of query 3 in head 1 gives a zero output row (as the CPU).
  const int64_t H = 2, S = 6, d = 16;
  const Pair q = env.input({1, S, H, d}, seed++), k = env.input({1, S, H, d}, seed++),
             v = env.input({1, S, H, d}, seed++);
  Tensor bh = test::random_host({H, S, S}, seed++);
  for (int64_t j = 0; j < S; ++j) bh.data_as<float>()[(1 * S + 3) * S + j] = -INFINITY;
  bh.data_as<float>()[(0 * S + 2) * S + 4] = -INFINITY;  // and one masked key elsewhere
  const Pair bias = env.from_host(bh, DType::kF32);
  const Pair out = env.poisoned({1, S, H, d});
  env.cpu->attention_biased(out.cpu, q.cpu, k.cpu, v.cpu, 0.25f, bias.cpu, false);
  env.gpu->attention_biased(out.gpu, q.gpu, k.gpu, v.gpu, 0.25f, bias.gpu, false);
  EXPECT_EQ(env.nan_count(out.gpu), 0);
  EXPECT_LE(env.rel(out), kTol) << "fully masked row";
  const Tensor o = env.gpu->download_f32(out.gpu);
  for (int64_t c = 0; c < d; ++c) EXPECT_EQ(o.data_as<float>()[(3 * H + 1) * d + c], 0.0f);
}

// The GEMM path over several blocks of queries: 64 heads with 4096 keys allow ~170 queries per block.
TEST(CudaOpsExt, AttentionBiasedCausalManyBlocks) {
  PD_GPU_ENV(env);
  run_biased_case(env, {"causal, 3 query blocks, B 2", 2, 300, 4096, 64, 8, false, true, 0.0f}, 1600);
}

TEST(CudaOpsExt, AttentionHeadDim512WithLse) {
  PD_GPU_ENV(env);
  // The VAE mid-block: one head of width 512 over H·W tokens (32×32 here), q/k/v views of one [1, S, 3C] buffer.
  const int64_t S = 1024, C = 512;
  const Pair qkv = env.input({1, S, 3 * C}, 1700);
  const auto head = [&](int64_t i) { return [=](const Tensor& t) { return chunk(i, C)(t).unsqueeze(2); }; };
  const Pair q = view(qkv, head(0)), k = view(qkv, head(1)), v = view(qkv, head(2));
  const Pair out = env.poisoned({1, S, 1, C});
  const Pair lse = env.poisoned({1, 1, S}, DType::kF32);
  const float scale = float(1.0 / std::sqrt(double(C)));
  env.cpu->attention(out.cpu, lse.cpu, q.cpu, k.cpu, v.cpu, scale);
  env.gpu->attention(out.gpu, lse.gpu, q.gpu, k.gpu, v.gpu, scale);
  EXPECT_LE(env.rel(out), kTol);
  EXPECT_EQ(env.nan_count(out.gpu), 0);
  EXPECT_LE(env.max_abs(lse), 1e-2) << "lse";

  // Without lse, B = 2, Sq != Skv, d = 320 (no cuDNN either).
  const Pair q2 = env.input({2, 50, 1, 320}, 1701), k2 = env.input({2, 70, 1, 320}, 1702),
             v2 = env.input({2, 70, 1, 320}, 1703);
  const Pair o2 = env.poisoned({2, 50, 1, 320});
  env.cpu->attention(o2.cpu, Tensor(), q2.cpu, k2.cpu, v2.cpu, 0.05f);
  env.gpu->attention(o2.gpu, Tensor(), q2.gpu, k2.gpu, v2.gpu, 0.05f);
  EXPECT_LE(env.rel(o2), kTol) << "d 320";
}

TEST(CudaOpsExt, ForcedGemmAttentionMatchesCpuAndCudnn) {
  PD_GPU_ENV(env);
  std::unique_ptr<Backend> forced = cuda_backend_with_env("PARADIT_CUDA_ATTENTION", "gemm");
  Env fenv{create_cpu_backend(), forced.get()};
  struct Case {
    int64_t B, Sq, Skv, H, d;
  };
  uint64_t seed = 1800;
  for (const Case c : {Case{2, 15, 33, 2, 64}, Case{1, 300, 4096, 64, 8}, Case{1, 256, 256, 24, 128}}) {
    const std::string what = detail::concat("B ", c.B, " Sq ", c.Sq, " Skv ", c.Skv, " H ", c.H, " d ", c.d);
    const int64_t D = c.H * c.d;
    const Tensor hq = test::random_host({c.B, c.Sq, 3 * D}, seed++),
                 hk = test::random_host({c.B, c.Skv, 3 * D}, seed++);
    const Pair qkv = fenv.from_host(hq), kv = fenv.from_host(hk);
    const auto heads = [&](int64_t i) {
      return [=](const Tensor& t) { return chunk(i, D)(t).unflatten(2, c.H, c.d); };
    };
    const Pair q = view(qkv, heads(0)), k = view(kv, heads(1)), v = view(kv, heads(2));
    const Pair cat = fenv.poisoned({c.B, c.Sq, 2 * D});
    const Pair out = view(cat, heads(1));
    const Pair lse = fenv.poisoned({c.B, c.H, c.Sq}, DType::kF32);
    const float scale = float(1.0 / std::sqrt(double(c.d)));
    fenv.cpu->attention(out.cpu, lse.cpu, q.cpu, k.cpu, v.cpu, scale);
    fenv.gpu->attention(out.gpu, lse.gpu, q.gpu, k.gpu, v.gpu, scale);
    EXPECT_LE(fenv.rel(out), kTol) << what;
    EXPECT_EQ(fenv.nan_count(cat.gpu), cat.gpu.numel() - out.gpu.numel()) << what;
    EXPECT_LE(fenv.max_abs(lse), 1e-2) << what << " (lse)";

    // The default backend (cuDNN where it takes the shape) on the same values agrees.
    const Tensor gq = env.gpu->upload(bf16_values(hq), DType::kBF16),
                 gk = env.gpu->upload(bf16_values(hk), DType::kBF16);
    Tensor o2 = env.gpu->empty({c.B, c.Sq, c.H, c.d});
    Tensor l2 = env.gpu->empty({c.B, c.H, c.Sq}, DType::kF32);
    env.gpu->attention(o2, l2, heads(0)(gq), heads(1)(gk), heads(2)(gk), scale);
    EXPECT_LE(test::rel_l2(fenv.gpu->download_f32(out.gpu), env.gpu->download_f32(o2)), kTol) << what << " vs default";
    EXPECT_LE(test::max_abs_diff(fenv.gpu->download_f32(lse.gpu), env.gpu->download_f32(l2)), 1e-2) << what;
  }
  // No keys: out 0, lse −∞.
  const Pair q = fenv.input({1, 5, 2, 64}, seed++), kv = fenv.input({1, 0, 2, 64}, seed++);
  const Pair out = fenv.poisoned({1, 5, 2, 64});
  const Pair lse = fenv.poisoned({1, 2, 5}, DType::kF32);
  fenv.gpu->attention(out.gpu, lse.gpu, q.gpu, kv.gpu, kv.gpu, 0.125f);
  const Tensor o = fenv.gpu->download_f32(out.gpu), l = fenv.gpu->download_f32(lse.gpu);
  for (int64_t i = 0; i < o.numel(); ++i) ASSERT_EQ(o.data_as<float>()[i], 0.0f);
  for (int64_t i = 0; i < l.numel(); ++i) ASSERT_EQ(l.data_as<float>()[i], -std::numeric_limits<float>::infinity());
}

// ---------------------------------------------------------------------------------------------------------------
// VAE

struct ConvCase {
  const char* name;
  int64_t B, H, W, Cin, Cout, kh, kw;
  int pad;
  bool bias;
  int64_t x_extra, y_extra;  // x / y are the first channels of buffers this many channels wider
  bool y_gap;                // y is every pixel but the last column of a [B, Ho, Wo + 1, C] buffer
};

void run_conv_case(Env& env, const ConvCase& c, uint64_t seed) {
  const int64_t Ho = c.H + 2 * c.pad - c.kh + 1, Wo = c.W + 2 * c.pad - c.kw + 1;
  const Pair xbuf = env.input({c.B, c.H, c.W, c.Cin + c.x_extra}, seed++);
  const Pair x = view(xbuf, [&](const Tensor& t) { return t.slice(3, 0, c.Cin); });
  const float wstd = float(1.0 / std::sqrt(double(c.kh * c.kw * c.Cin)));
  const Pair w = env.input({c.Cout, c.kh, c.kw, c.Cin}, seed++, wstd);
  const Pair b = c.bias ? env.input({c.Cout}, seed++) : Pair{};
  const Pair ybuf = env.poisoned({c.B, Ho, Wo + (c.y_gap ? 1 : 0), c.Cout + c.y_extra});
  const Pair y = view(ybuf, [&](const Tensor& t) { return t.slice(3, 0, c.Cout).slice(2, 0, Wo); });
  env.cpu->conv2d(y.cpu, x.cpu, w.cpu, b.cpu, c.pad);
  env.gpu->conv2d(y.gpu, x.gpu, w.gpu, b.gpu, c.pad);
  EXPECT_LE(env.rel(y), kTol) << c.name;
  EXPECT_EQ(env.nan_count(ybuf.gpu), ybuf.gpu.numel() - y.gpu.numel()) << c.name;
}

const ConvCase kConvCases[] = {
    {"3x3 Cin 3 -> Cout 5, 5x7, pad 1", 2, 5, 7, 3, 5, 3, 3, 1, true, 0, 0, false},
    {"3x3 512 -> 512, 32x32, pad 1", 1, 32, 32, 512, 512, 3, 3, 1, true, 0, 0, false},
    {"1x1 64 -> 32, 16x16", 2, 16, 16, 64, 32, 1, 1, 0, true, 0, 0, false},
    {"1x1 64 -> 40, no bias, strided x", 1, 9, 11, 64, 40, 1, 1, 0, false, 16, 0, false},
    {"3x3 16 -> 128 (conv_in), 20x24", 1, 20, 24, 16, 128, 3, 3, 1, true, 0, 0, false},
    {"3x3 128 -> 3 (conv_out), 24x20", 1, 24, 20, 128, 3, 3, 3, 1, true, 0, 0, false},
    {"3x3 64 -> 64, no bias, y a channel slice", 2, 12, 10, 64, 64, 3, 3, 1, false, 0, 64, false},
    {"3x3 32 -> 48, pad 0, x and y channel slices", 1, 10, 9, 32, 48, 3, 3, 0, true, 8, 16, false},
    {"1x3 24 -> 16, pad 2, uneven y pixels", 2, 6, 5, 24, 16, 1, 3, 2, true, 0, 0, true},
};

TEST(CudaOpsExt, Conv2dMatchesCpu) {
  PD_GPU_ENV(env);
  uint64_t seed = 2000;
  for (const ConvCase& c : kConvCases) {
    run_conv_case(env, c, seed);
    seed += 10;
  }
}

TEST(CudaOpsExt, Conv2dGemmPathMatchesCpu) {
  PD_REQUIRE_GPU(unused_);
  std::unique_ptr<Backend> forced = cuda_backend_with_env("PARADIT_CUDA_CONV", "gemm");
  Env env{create_cpu_backend(), forced.get()};
  uint64_t seed = 2100;
  for (const ConvCase& c : kConvCases) {
    run_conv_case(env, c, seed);
    seed += 10;
  }
}

TEST(CudaOpsExt, GroupNormMatchesCpu) {
  PD_GPU_ENV(env);
  struct Case {
    int64_t B, H, W, C;
    int groups;
    bool silu;
    float offset;     // added to x: statistics must not cancel
    int64_t x_extra;  // x is the first C channels of a wider buffer
  };
  uint64_t seed = 2200;
  for (const Case c : {Case{2, 16, 16, 512, 32, true, 0.0f, 0}, Case{1, 16, 16, 512, 32, false, 0.0f, 0},
                       Case{1, 5, 7, 6, 3, true, 0.0f, 0}, Case{1, 24, 20, 128, 32, true, 40.0f, 0},
                       Case{2, 9, 11, 256, 32, false, 0.0f, 64}, Case{1, 64, 64, 128, 32, true, 0.0f, 0},
                       Case{1, 3, 3, 10, 5, true, 2.0f, 0}}) {
    const std::string what = detail::concat("B ", c.B, " ", c.H, "x", c.W, " C ", c.C, " groups ", c.groups,
                                            c.silu ? " silu" : "", " offset ", c.offset, c.x_extra ? " strided" : "");
    const Pair xbuf = env.from_host([&] {
      Tensor h = test::random_host({c.B, c.H, c.W, c.C + c.x_extra}, seed++, 1.5f);
      for (int64_t i = 0; i < h.numel(); ++i) h.data_as<float>()[i] += c.offset;
      return h;
    }());
    const Pair x = view(xbuf, [&](const Tensor& t) { return t.slice(3, 0, c.C); });
    const Pair w = env.input({c.C}, seed++), b = env.input({c.C}, seed++);
    const Pair y = env.poisoned({c.B, c.H, c.W, c.C});
    env.cpu->group_norm(y.cpu, x.cpu, w.cpu, b.cpu, c.groups, kEps, c.silu);
    env.gpu->group_norm(y.gpu, x.gpu, w.gpu, b.gpu, c.groups, kEps, c.silu);
    EXPECT_LE(env.rel(y), kTol) << what;
    EXPECT_EQ(env.nan_count(y.gpu), 0) << what;
  }
  // In place (the resnet block's second norm), and deterministic: two runs agree bit for bit.
  const Pair x = env.input({1, 32, 32, 256}, seed++, 2.0f);
  const Pair w = env.input({256}, seed++), b = env.input({256}, seed++);
  Tensor again = env.gpu->empty({1, 32, 32, 256});
  env.gpu->group_norm(again, x.gpu, w.gpu, b.gpu, 32, kEps, true);
  env.cpu->group_norm(x.cpu, x.cpu, w.cpu, b.cpu, 32, kEps, true);
  env.gpu->group_norm(x.gpu, x.gpu, w.gpu, b.gpu, 32, kEps, true);
  EXPECT_LE(env.rel(x), kTol) << "in place";
  EXPECT_EQ(test::max_abs_diff(env.gpu->download_f32(again), env.gpu->download_f32(x.gpu)), 0.0) << "determinism";
}

TEST(CudaOpsExt, UpsampleNearest2xCopiesExactly) {
  PD_GPU_ENV(env);
  uint64_t seed = 2300;
  struct Case {
    int64_t B, H, W, C, y_extra;
  };
  for (const Case c : {Case{2, 4, 5, 512, 0}, Case{1, 5, 7, 3, 0}, Case{1, 3, 4, 64, 8}, Case{1, 1, 1, 6, 2}}) {
    const Pair x = env.input({c.B, c.H, c.W, c.C}, seed++);
    const Pair ybuf = env.poisoned({c.B, 2 * c.H, 2 * c.W, c.C + c.y_extra});
    const Pair y = view(ybuf, [&](const Tensor& t) { return t.slice(3, 0, c.C); });
    env.cpu->upsample_nearest2x(y.cpu, x.cpu);
    env.gpu->upsample_nearest2x(y.gpu, x.gpu);
    EXPECT_EQ(env.max_abs(y), 0.0) << "C " << c.C;
    EXPECT_EQ(env.nan_count(ybuf.gpu), ybuf.gpu.numel() - y.gpu.numel()) << "C " << c.C;
  }
}

// The 8-bit conversion on the device gives the bytes the CPU backend gives: from bf16 values (what the VAE
// hands over) and from f32 values with NaN, ±inf, out-of-range values and every rounding tie in [0, 255] and its
// neighbours (the ties are not representable in bf16).
TEST(CudaOpsExt, ToRgb8MatchesCpuBytes) {
  PD_GPU_ENV(env);
  const Pair x = env.input({1, 333, 517, 3}, 2400);  // 516 K values, not a multiple of any block
  std::vector<uint8_t> want(size_t(x.cpu.numel()), 7), got(size_t(x.cpu.numel()), 9);
  env.cpu->to_rgb8(x.cpu, want.data());
  env.gpu->to_rgb8(x.gpu, got.data());
  EXPECT_EQ(want, got) << "from bf16";

  std::vector<float> values = {std::nanf(""), INFINITY, -INFINITY, -1.0f, 1.0f, 0.0f, -2.0f, 3.0f, -0.0f};
  for (int k = 0; k < 256; ++k) {
    const float half = ((float(k) + 0.5f) / 255.0f) * 2.0f - 1.0f;
    values.insert(values.end(), {half, std::nextafter(half, -2.0f), std::nextafter(half, 2.0f)});
  }
  Tensor host = Tensor::empty({1, 1, int64_t(values.size()), 1}, DType::kF32, cpu_allocator());
  std::copy(values.begin(), values.end(), host.data_as<float>());
  std::vector<uint8_t> want32(values.size(), 7), got32(values.size(), 9);
  env.cpu->to_rgb8(host, want32.data());
  env.gpu->to_rgb8(env.gpu->upload(host, DType::kF32), got32.data());
  EXPECT_EQ(want32, got32) << "from f32";
  EXPECT_EQ(got32[0], 0);    // NaN
  EXPECT_EQ(got32[1], 255);  // +inf
}

// ---------------------------------------------------------------------------------------------------------------
// Errors

TEST(CudaOpsExt, BadArgumentsThrowClearErrors) {
  PD_GPU_ENV(env);
  Backend& gpu = *env.gpu;
  const Tensor x = gpu.empty({1, 6, 6, 8}), w = gpu.empty({16, 3, 3, 8}), y = gpu.empty({1, 6, 6, 16});
  EXPECT_EQ(code_of([&] { gpu.conv2d(y, x, gpu.empty({16, 3, 3, 4}), Tensor(), 1); }), StatusCode::kInvalidArgument);
  EXPECT_EQ(code_of([&] { gpu.conv2d(y, x, w, Tensor(), 0); }), StatusCode::kInvalidArgument);  // y shape
  EXPECT_EQ(code_of([&] { gpu.conv2d(y, x, w, gpu.empty({15}), 1); }), StatusCode::kInvalidArgument);
  EXPECT_EQ(code_of([&] {
              gpu.conv2d(y, gpu.empty({1, 6, 6, 8}, DType::kF32), w, Tensor(), 1);
            }),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(code_of([&] { gpu.group_norm(y, y, gpu.empty({16}), gpu.empty({16}), 3, kEps, true); }),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(code_of([&] { gpu.group_norm(y, y, gpu.empty({16}), Tensor(), 4, kEps, true); }),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(code_of([&] { gpu.upsample_nearest2x(gpu.empty({1, 12, 11, 8}), x); }), StatusCode::kInvalidArgument);
  const Tensor q = gpu.empty({1, 7, 2, 16});
  EXPECT_EQ(code_of([&] {
              gpu.attention_biased(q, q, q, q, 1.0f, gpu.empty({2, 7, 6}, DType::kF32), false);
            }),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(code_of([&] {
              gpu.attention_biased(q, q, q, q, 1.0f, gpu.empty({2, 7, 7}), false);
            }),
            StatusCode::kInvalidArgument);  // bf16 bias
  EXPECT_EQ(code_of([&] {
              gpu.layer_norm(gpu.empty({2, 5}), gpu.empty({2, 5}), gpu.empty({4}), Tensor(), kEps);
            }),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(code_of([&] { gpu.axpby(gpu.empty({4}), gpu.empty({4}), 1.0f, gpu.empty({5}), 1.0f); }),
            StatusCode::kInvalidArgument);
  try {
    gpu.conv2d(y, x, gpu.empty({16, 3, 3, 4}), Tensor(), 1);
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("conv2d"), std::string::npos) << e.what();
  }
  // The backend keeps working after refusing.
  gpu.fill(y, 2.0f);
  EXPECT_EQ(gpu.download_f32(y).data_as<float>()[0], 2.0f);
}

// ---------------------------------------------------------------------------------------------------------------
// Timings (printed, not checked): the VAE decoder's convolutions at 1024² output, its mid-block attention, and
// T5-XXL's biased attention.

double time_ms(Backend& b, int iters, const std::function<void()>& fn) {
  fn();
  b.synchronize();
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < iters; ++i) fn();
  b.synchronize();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / iters;
}

Tensor random_dev(Backend& b, const Shape& shape, uint64_t seed, float stddev = 1.0f, DType dt = DType::kBF16) {
  Tensor t = b.empty(shape, dt);
  b.fill_random(t, seed, stddev);
  return t;
}

TEST(CudaOpsExtTiming, Print) {
  PD_REQUIRE_GPU(gpu_);
  Backend& gpu = *gpu_;
  struct Conv {
    int64_t hw, cin, cout;
    int count;  // how many such 3×3 convs the FLUX VAE decoder runs at 1024² output
  };
  // conv_in, mid + up0 (512 @ 128²), up1 (512 @ 256²), up2 (512/256 @ 512²), up3 (256/128 @ 1024²), conv_out.
  const Conv convs[] = {{128, 16, 512, 1},   {128, 512, 512, 13}, {256, 512, 512, 7},  {512, 512, 512, 6},
                        {512, 512, 256, 1},  {512, 256, 256, 5},  {1024, 256, 256, 1}, {1024, 256, 128, 1},
                        {1024, 128, 128, 5}, {1024, 128, 3, 1}};
  double total_ms = 0, total_flop = 0;
  for (const Conv& c : convs) {
    const Tensor x = random_dev(gpu, {1, c.hw, c.hw, c.cin}, 1);
    const Tensor w = random_dev(gpu, {c.cout, 3, 3, c.cin}, 2, 0.02f);
    const Tensor b = random_dev(gpu, {c.cout}, 3, 0.1f);
    const Tensor y = gpu.empty({1, c.hw, c.hw, c.cout});
    const double ms = time_ms(gpu, 5, [&] { gpu.conv2d(y, x, w, b, 1); });
    const double flop = 2.0 * double(c.hw * c.hw) * double(c.cin * c.cout * 9);
    total_ms += ms * c.count;
    total_flop += flop * c.count;
    std::printf("[timing] conv2d 3x3 %4lld -> %4lld at %4lld^2: %8.3f ms  %6.1f TFLOP/s  (x%d)\n", (long long)c.cin,
                (long long)c.cout, (long long)c.hw, ms, flop / ms * 1e-9, c.count);
  }
  std::printf("[timing] VAE decoder 3x3 convs at 1024^2: %.1f ms for %.2f TFLOP (%.1f TFLOP/s)\n", total_ms,
              total_flop * 1e-12, total_flop / total_ms * 1e-9);
  {
    const Tensor x = random_dev(gpu, {1, 1024, 1024, 128}, 4);
    const Tensor w = random_dev(gpu, {128}, 5), b = random_dev(gpu, {128}, 6);
    const Tensor y = gpu.empty({1, 1024, 1024, 128});
    const double ms = time_ms(gpu, 10, [&] { gpu.group_norm(y, x, w, b, 32, kEps, true); });
    std::printf("[timing] group_norm+silu 1024^2 x 128: %.3f ms (%.0f GB/s)\n", ms,
                2.0 * 2 * 1024 * 1024 * 128 / ms * 1e-6);
    const Tensor up = gpu.empty({1, 2048, 1024, 128});
    const Tensor half = x.slice(1, 0, 512).slice(2, 0, 512);
    const double ums = time_ms(gpu, 10, [&] { gpu.upsample_nearest2x(up.slice(1, 0, 1024), half); });
    std::printf("[timing] upsample_nearest2x 512^2 x 128 (strided x): %.3f ms\n", ums);
  }
  for (const int64_t hw : {int64_t(128), int64_t(256)}) {  // the mid-block attention at 1024² and 2048² output
    const int64_t S = hw * hw, C = 512;
    const Tensor qkv = random_dev(gpu, {1, S, 3 * C}, 7);
    const auto head = [&](int i) { return qkv.slice(2, i * C, C).unsqueeze(2); };
    const Tensor o = gpu.empty({1, S, 1, C});
    const double ms = time_ms(gpu, 3, [&] { gpu.attention(o, Tensor(), head(0), head(1), head(2), 0.044f); });
    std::printf("[timing] VAE attention 1 head x 512, %lld tokens: %.2f ms (%.1f TFLOP/s)\n", (long long)S, ms,
                4.0 * double(S) * double(S) * double(C) / ms * 1e-9);
  }
  {
    const int64_t S = 512, H = 64, d = 64;
    const Tensor qkv = random_dev(gpu, {1, S, 3 * H * d}, 8);
    const auto heads = [&](int i) { return qkv.slice(2, i * H * d, H * d).unflatten(2, H, d); };
    const Tensor bias = random_dev(gpu, {H, S, S}, 9, 1.0f, DType::kF32);
    const Tensor o = gpu.empty({1, S, H, d});
    const double ms =
        time_ms(gpu, 24, [&] { gpu.attention_biased(o, heads(0), heads(1), heads(2), 1.0f, bias, false); });
    std::printf("[timing] T5-XXL attention_biased 512 tokens x 64 heads x 64: %.3f ms per layer, %.2f ms for 24\n", ms,
                24 * ms);
    const Tensor x = random_dev(gpu, {1, S, 4096}, 10), w = random_dev(gpu, {4096}, 11);
    const Tensor y = gpu.empty({1, S, 4096});
    const double rms = time_ms(gpu, 20, [&] {
      gpu.rms_norm_rope(y.unflatten(2, 1, 4096), x.unflatten(2, 1, 4096), w, Tensor(), Tensor(), kEps);
    });
    std::printf("[timing] T5LayerNorm 512 x 4096: %.4f ms\n", rms);
  }
}

}  // namespace
}  // namespace paradit
