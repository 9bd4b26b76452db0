// Every op of the CUDA backend (bf16) against the CPU backend (fp32 reference) on the same inputs — host f32
// values rounded to bf16 first, so both sides start from identical numbers — with the strided views the FLUX
// model uses: q/k/v as views into one packed QKV buffer, gate/shift/scale as chunks of a [B, 6D] modulation
// buffer, GEMM outputs written into a column slice of a wider buffer, text/image rows of a joint sequence.
// Outputs are poisoned with NaN first; views are checked to leave the rest of their buffer untouched.
#include <array>
#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <string>
#include <tuple>
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

// ---------------------------------------------------------------------------------------------------------------
// Data movement

TEST(CudaOps, CopyRoundTripsAndConverts) {
  PD_GPU_ENV(env);
  Backend& gpu = *env.gpu;
  const Tensor h = test::random_host({2, 15, 37}, 1);
  // f32 round trip is exact; bf16 round trip equals the host's rounding exactly.
  EXPECT_EQ(test::max_abs_diff(gpu.download_f32(gpu.upload(h, DType::kF32)), h), 0.0);
  EXPECT_EQ(test::max_abs_diff(gpu.download_f32(gpu.upload(h, DType::kBF16)), bf16_values(h)), 0.0);
  // f16 on the device: within f16 rounding.
  EXPECT_LE(test::rel_l2(gpu.download_f32(gpu.upload(h, DType::kF16)), h), 1e-3);

  // A bf16 host tensor goes up raw and comes back as the same values.
  Tensor hb = Tensor::empty(h.shape(), DType::kBF16, cpu_allocator());
  convert_host(hb.data(), DType::kBF16, h.data(), DType::kF32, size_t(h.numel()));
  EXPECT_EQ(test::max_abs_diff(gpu.download_f32(gpu.upload(hb, DType::kBF16)), bf16_values(h)), 0.0);
  // Download into a bf16 host tensor (device-side conversion, then one contiguous copy).
  const Tensor dev = gpu.upload(h, DType::kF32);
  Tensor back = Tensor::empty(h.shape(), DType::kBF16, cpu_allocator());
  gpu.copy(back, dev);
  gpu.synchronize();
  EXPECT_EQ(test::max_abs_diff(test::to_contiguous_f32(back), bf16_values(h)), 0.0);

  // fp8 e4m3 as a source: every byte value that is finite.
  Tensor f8 = Tensor::empty({2, 127}, DType::kF8E4M3, cpu_allocator());
  Tensor f8_ref = Tensor::empty({2, 127}, DType::kF32, cpu_allocator());
  for (int i = 0; i < 254; ++i) {
    const uint8_t byte = uint8_t(i < 127 ? i : 128 + (i - 127));  // skips 0x7f and 0xff (NaN)
    f8.data_as<uint8_t>()[i] = byte;
    f8_ref.data_as<float>()[i] = f8e4m3_to_f32(byte);
  }
  const Tensor f8_dev = gpu.upload(f8, DType::kF8E4M3);
  Tensor f8_as_bf16 = gpu.empty({2, 127}, DType::kBF16);
  gpu.copy(f8_as_bf16, f8_dev);
  EXPECT_EQ(test::max_abs_diff(gpu.download_f32(f8_as_bf16), f8_ref), 0.0);  // e4m3 values are exact in bf16
}

TEST(CudaOps, StridedDeviceCopies) {
  PD_GPU_ENV(env);
  Backend& gpu = *env.gpu;
  const Tensor h = test::random_host({2, 15, 3, 4, 8}, 2);
  const Tensor dev = gpu.upload(h, DType::kF32);
  // Views: a permutation (5 dims, nothing mergeable), a column slice, a select; both dtypes ways.
  const std::vector<std::function<Tensor(const Tensor&)>> views = {
      [](const Tensor& t) { return t.transpose(0, 3).transpose(1, 4); },
      [](const Tensor& t) { return t.slice(2, 1, 2); },
      [](const Tensor& t) { return t.select(3, 2).transpose(0, 1); },
      [](const Tensor& t) { return t.view({30, 96}).slice(1, 8, 80); },
  };
  for (size_t i = 0; i < views.size(); ++i) {
    const Tensor src = views[i](dev);
    const Tensor want = bf16_values(views[i](h));
    Tensor out = gpu.empty(src.shape(), DType::kBF16);
    gpu.fill(out, NAN);
    gpu.copy(out, src);  // strided f32 -> contiguous bf16
    EXPECT_EQ(test::max_abs_diff(gpu.download_f32(out), want), 0.0) << "view " << i;
    // And back into a strided bf16 destination inside a poisoned buffer.
    Tensor buf = gpu.empty(h.shape(), DType::kBF16);
    gpu.fill(buf, NAN);
    const Tensor dst = views[i](buf);
    gpu.copy(dst, out);
    EXPECT_EQ(test::max_abs_diff(gpu.download_f32(dst), want), 0.0) << "view " << i;
    EXPECT_EQ(env.nan_count(buf), buf.numel() - dst.numel()) << "view " << i << " wrote outside its elements";
  }
  // A 6-dimensional permutation with an odd inner extent (scalar path).
  const Tensor h6 = test::random_host({2, 3, 2, 3, 2, 5}, 3);
  const Tensor d6 = gpu.upload(h6, DType::kF32).transpose(0, 5).transpose(2, 3);
  Tensor o6 = gpu.empty(d6.shape(), DType::kF32);
  gpu.copy(o6, d6);
  EXPECT_EQ(test::max_abs_diff(gpu.download_f32(o6), test::to_contiguous_f32(h6.transpose(0, 5).transpose(2, 3))),
            0.0);
}

TEST(CudaOps, FillAndFillRandomMatchCpu) {
  PD_GPU_ENV(env);
  Backend& gpu = *env.gpu;
  Tensor t = gpu.empty({7, 33}, DType::kBF16);
  gpu.fill(t, 1.5f);
  const Tensor ones = gpu.download_f32(t);
  for (int64_t i = 0; i < ones.numel(); ++i) ASSERT_EQ(ones.data_as<float>()[i], 1.5f);

  for (const Shape& shape : {Shape{7, 1001}, Shape{2, 15, 3072}, Shape{5}}) {
    Tensor ref = env.cpu->empty(shape, DType::kF32);
    env.cpu->fill_random(ref, 1234, 0.02f);
    const Tensor ref_h = env.cpu->download_f32(ref);
    Tensor g32 = gpu.empty(shape, DType::kF32);
    gpu.fill_random(g32, 1234, 0.02f);
    EXPECT_EQ(test::max_abs_diff(gpu.download_f32(g32), ref_h), 0.0) << shape_str(shape);  // bit-identical
    Tensor g16 = gpu.empty(shape, DType::kBF16);
    gpu.fill_random(g16, 1234, 0.02f);
    EXPECT_EQ(test::max_abs_diff(gpu.download_f32(g16), bf16_values(ref_h)), 0.0) << shape_str(shape);
  }
  // A strided destination: element i is the row-major index within the view.
  Tensor buf = gpu.empty({4, 3, 64}, DType::kBF16);
  gpu.fill(buf, NAN);
  const Tensor v = buf.slice(2, 8, 48);
  gpu.fill_random(v, 7, 1.0f);
  Tensor ref = env.cpu->empty(v.shape(), DType::kF32);
  env.cpu->fill_random(ref, 7, 1.0f);
  EXPECT_EQ(test::max_abs_diff(gpu.download_f32(v), bf16_values(env.cpu->download_f32(ref))), 0.0);
  EXPECT_EQ(env.nan_count(buf), buf.numel() - v.numel());
}

// ---------------------------------------------------------------------------------------------------------------
// GEMMs

TEST(CudaOps, LinearMatchesCpu) {
  PD_GPU_ENV(env);
  struct Case {
    const char* name;
    int64_t B, S, K, N;
    bool bias;
    Epilogue ep;
    int64_t y_width, y_col;  // y is columns [y_col, y_col + N) of a [B, S, y_width] buffer
  };
  const Case cases[] = {
      {"plain bias", 2, 15, 256, 384, true, Epilogue::kNone, 384, 0},
      {"gelu into column slice", 2, 7, 64, 256, true, Epilogue::kGeluTanh, 320, 64},
      {"gelu no bias", 1, 15, 128, 72, false, Epilogue::kGeluTanh, 72, 0},
      {"odd widths", 2, 7, 72, 40, true, Epilogue::kNone, 120, 80},
      {"long sequence", 1, 4608, 256, 384, true, Epilogue::kNone, 384, 0},
  };
  uint64_t seed = 10;
  for (const Case& c : cases) {
    const Pair x = env.input({c.B, c.S, c.K}, seed++);
    const Pair w = env.input({c.N, c.K}, seed++, 0.05f);
    const Pair b = c.bias ? env.input({c.N}, seed++) : Pair{};
    const Pair ybuf = env.poisoned({c.B, c.S, c.y_width});
    const Pair y = view(ybuf, [&](const Tensor& t) { return t.slice(2, c.y_col, c.N); });
    env.cpu->linear(y.cpu, x.cpu, w.cpu, b.cpu, c.ep);
    env.gpu->linear(y.gpu, x.gpu, w.gpu, b.gpu, c.ep);
    EXPECT_LE(env.rel(y), kTol) << c.name;
    EXPECT_EQ(env.nan_count(ybuf.gpu), ybuf.gpu.numel() - y.gpu.numel()) << c.name;
  }

  // Rows of a joint sequence (B = 2, so per-batch strided GEMM): text rows [0, 7) and image rows [7, 22).
  const Pair z = env.input({2, 22, 64}, 40);
  const Pair w = env.input({192, 64}, 41, 0.1f);
  const Pair b = env.input({192}, 42);
  const Pair qkv = env.poisoned({2, 22, 192});
  using Rows = std::pair<int64_t, int64_t>;
  for (auto [start, len] : {Rows{0, 7}, Rows{7, 15}}) {
    const auto rows = [=](const Tensor& t) { return t.slice(1, start, len); };
    env.cpu->linear(rows(qkv.cpu), rows(z.cpu), w.cpu, b.cpu, Epilogue::kNone);
    env.gpu->linear(rows(qkv.gpu), rows(z.gpu), w.gpu, b.gpu, Epilogue::kNone);
  }
  EXPECT_LE(env.rel(qkv), kTol) << "rows of a joint sequence";

  // The modulation GEMM: 2-D x [B, D] into the first half of a [B, 6D] buffer.
  const Pair temb = env.input({2, 64}, 43);
  const Pair wm = env.input({192, 64}, 44, 0.1f);
  const Pair mod = env.poisoned({2, 384});
  const Pair half = view(mod, chunk(0, 192));
  env.cpu->linear(half.cpu, temb.cpu, wm.cpu, Tensor(), Epilogue::kNone);
  env.gpu->linear(half.gpu, temb.gpu, wm.gpu, Tensor(), Epilogue::kNone);
  EXPECT_LE(env.rel(half), kTol) << "2-D modulation GEMM";
  EXPECT_EQ(env.nan_count(mod.gpu), 2 * 192);
}

// A GEMM split over its input columns, as a single block's output projection runs under Ulysses: the MLP columns
// of a wide weight first (with the bias), then the attention columns added on (linear_accumulate), into rows of a
// wider buffer; against the CPU backend doing the same, and against the whole GEMM.
TEST(CudaOps, LinearSplitOverInputColumnsMatchesCpu) {
  PD_GPU_ENV(env);
  const int64_t B = 1, S = 300, A = 128, M = 384, N = 192;
  const Pair x = env.input({B, S, A + M}, 60);
  const Pair w = env.input({N, A + M}, 61, 0.05f);
  const Pair b = env.input({N}, 62);
  const Pair ybuf = env.poisoned({B, S, N + 64});
  const Pair y = view(ybuf, [&](const Tensor& t) { return t.slice(2, 32, N); });
  const auto cols = [](const Tensor& t, int64_t start, int64_t n) { return t.slice(-1, start, n); };
  const auto split = [&](Backend& be, const Tensor& xs, const Tensor& ws, const Tensor& bs, const Tensor& ys) {
    be.linear(ys, cols(xs, A, M), cols(ws, A, M), bs, Epilogue::kNone);
    be.linear_accumulate(ys, cols(xs, 0, A), cols(ws, 0, A));
  };
  split(*env.cpu, x.cpu, w.cpu, b.cpu, y.cpu);
  split(*env.gpu, x.gpu, w.gpu, b.gpu, y.gpu);
  EXPECT_LE(env.rel(y), kTol);
  EXPECT_EQ(env.nan_count(ybuf.gpu), ybuf.gpu.numel() - y.gpu.numel());
  const Pair whole = env.poisoned({B, S, N});
  env.cpu->linear(whole.cpu, x.cpu, w.cpu, b.cpu, Epilogue::kNone);
  EXPECT_LE(rel_l2(y.cpu, whole.cpu), 1e-5) << "the split GEMM is the whole one (fp32)";
}

// A block half's closing GEMM and its gated residual update, as the FLUX blocks run them (linear into delta, then
// the update): x a column slice of a wider buffer, with and without bias, and rows of a joint sequence with B = 2
// (per-batch strided GEMMs, per-batch gates).
TEST(CudaOps, GatedResidualAfterLinearMatchesCpu) {
  PD_GPU_ENV(env);
  const char* label = "linear + gated_add";
  struct Case {
    const char* name;
    int64_t B, S, K, N;
    bool bias;
    int64_t x_width;  // x is columns [0, K) of a [B, S, x_width] buffer
  };
  const Case cases[] = {
      {"proj_out over the whole concat", 2, 15, 320, 64, true, 320},
      {"attention output slice", 2, 7, 64, 64, true, 320},
      {"no bias", 1, 7, 128, 96, false, 128},
      {"long sequence", 1, 4608, 256, 128, true, 256},
  };
  uint64_t seed = 100;
  for (const Case& c : cases) {
    const Pair xbuf = env.input({c.B, c.S, c.x_width}, seed++);
    const Pair x = view(xbuf, [&](const Tensor& t) { return t.slice(2, 0, c.K); });
    const Pair w = env.input({c.N, c.K}, seed++, 0.05f);
    const Pair b = c.bias ? env.input({c.N}, seed++) : Pair{};
    const Pair mod = env.input({c.B, 6 * c.N}, seed++);
    const Pair gate = view(mod, chunk(2, c.N));
    const Pair residual = env.input({c.B, c.S, c.N}, seed++);
    const Pair delta = env.poisoned({c.B, c.S, c.N});
    env.cpu->linear(delta.cpu, x.cpu, w.cpu, b.cpu, Epilogue::kNone);
    env.gpu->linear(delta.gpu, x.gpu, w.gpu, b.gpu, Epilogue::kNone);
    env.cpu->gated_add(residual.cpu, delta.cpu, gate.cpu);
    env.gpu->gated_add(residual.gpu, delta.gpu, gate.gpu);
    EXPECT_LE(env.rel(residual), kTol) << label << ": " << c.name;
  }
  // Rows of a joint sequence with B = 2: per-batch strided GEMM with a per-batch gate.
  const Pair z = env.input({2, 22, 64}, 150);
  const Pair attn = env.input({2, 22, 64}, 151);
  const Pair w = env.input({64, 64}, 152, 0.1f);
  const Pair b = env.input({64}, 153);
  const Pair mod_txt = env.input({2, 384}, 154), mod_img = env.input({2, 384}, 155);
  using Stream = std::tuple<int64_t, int64_t, const Pair*>;
  for (auto [start, len, mod] : {Stream{0, 7, &mod_txt}, Stream{7, 15, &mod_img}}) {
    const auto rows = [=](const Tensor& t) { return t.slice(1, start, len); };
    const Pair gate = view(*mod, chunk(2, 64));
    const Pair delta = env.poisoned({2, len, 64});
    env.cpu->linear(delta.cpu, rows(attn.cpu), w.cpu, b.cpu, Epilogue::kNone);
    env.gpu->linear(delta.gpu, rows(attn.gpu), w.gpu, b.gpu, Epilogue::kNone);
    env.cpu->gated_add(rows(z.cpu), delta.cpu, gate.cpu);
    env.gpu->gated_add(rows(z.gpu), delta.gpu, gate.gpu);
  }
  EXPECT_LE(env.rel(z), kTol) << label << ": rows of a joint sequence";
}

// ---------------------------------------------------------------------------------------------------------------
// Norms

TEST(CudaOps, LayerNormModulateMatchesCpu) {
  PD_GPU_ENV(env);
  struct Case {
    int64_t B, S, D;
    bool modulate;
  };
  uint64_t seed = 200;
  for (const Case c : {Case{2, 15, 3072, true}, Case{2, 7, 100, true}, Case{1, 4608, 3072, true},
                       Case{2, 7, 256, false}, Case{1, 3, 20000, true}}) {
    // x = the image rows [3, 3 + S) of a longer joint sequence; y into a fresh poisoned buffer.
    const Pair zbuf = env.input({c.B, c.S + 5, c.D}, seed++, 2.0f);
    const Pair x = view(zbuf, [&](const Tensor& t) { return t.slice(1, 3, c.S); });
    const Pair mod = env.input({c.B, 6 * c.D}, seed++, 0.5f);
    const Pair shift = c.modulate ? view(mod, chunk(3, c.D)) : Pair{};
    const Pair scale = c.modulate ? view(mod, chunk(4, c.D)) : Pair{};
    const Pair y = env.poisoned({c.B, c.S, c.D});
    env.cpu->layer_norm_modulate(y.cpu, x.cpu, shift.cpu, scale.cpu, kEps);
    env.gpu->layer_norm_modulate(y.gpu, x.gpu, shift.gpu, scale.gpu, kEps);
    EXPECT_LE(env.rel(y), kTol) << "B " << c.B << " S " << c.S << " D " << c.D;
  }
  // In place.
  const Pair x = env.input({2, 15, 256}, 220);
  env.cpu->layer_norm_modulate(x.cpu, x.cpu, Tensor(), Tensor(), kEps);
  env.gpu->layer_norm_modulate(x.gpu, x.gpu, Tensor(), Tensor(), kEps);
  EXPECT_LE(env.rel(x), kTol) << "in place";
}

// The pending residual update of a block half fused into the LayerNorm of the next: z (rows of a longer joint
// buffer, updated in place) and the normalised output both match the CPU's gated_add then layer_norm_modulate.
TEST(CudaOps, GatedAddLayerNormModulateMatchesCpu) {
  PD_GPU_ENV(env);
  uint64_t seed = 250;
  for (const auto [B, S, D] : {std::array<int64_t, 3>{2, 15, 3072}, {2, 7, 100}, {1, 4608, 3072}}) {
    const Pair zbuf = env.input({B, S + 5, D}, seed++, 2.0f);
    const Pair z = view(zbuf, [&](const Tensor& t) { return t.slice(1, 3, S); });
    const Pair delta = env.input({B, S, D}, seed++);
    const Pair mod = env.input({B, 6 * D}, seed++, 0.5f);
    const Pair y = env.poisoned({B, S, D});
    const Pair gate = view(mod, chunk(5, D)), shift = view(mod, chunk(3, D)), scale = view(mod, chunk(4, D));
    env.cpu->gated_add_layer_norm_modulate(y.cpu, z.cpu, delta.cpu, gate.cpu, shift.cpu, scale.cpu, kEps);
    env.gpu->gated_add_layer_norm_modulate(y.gpu, z.gpu, delta.gpu, gate.gpu, shift.gpu, scale.gpu, kEps);
    EXPECT_LE(env.rel(y), kTol) << "y: B " << B << " S " << S << " D " << D;
    EXPECT_LE(env.rel(zbuf), kTol) << "z: B " << B << " S " << S << " D " << D;
  }
}

TEST(CudaOps, RmsNormRopeMatchesCpu) {
  PD_GPU_ENV(env);
  struct Case {
    int64_t B, S, H, d;
    bool rope;
  };
  uint64_t seed = 300;
  for (const Case c : {Case{2, 15, 3, 128, true}, Case{2, 7, 2, 64, true}, Case{1, 4608, 24, 128, true},
                       Case{2, 7, 3, 128, false}, Case{1, 5, 2, 38, true}, Case{1, 5, 2, 33, false},
                       Case{1, 3, 2, 512, true}}) {
    const int64_t D = c.H * c.d;
    // q and k in place inside a packed [B, S, 3D] QKV buffer; v must stay untouched.
    const Pair qkv = env.input({c.B, c.S, 3 * D}, seed++, 3.0f);
    const Tensor v_before = env.gpu->download_f32(chunk(2, D)(qkv.gpu));
    const Pair wq = env.input({c.d}, seed++), wk = env.input({c.d}, seed++);
    const Pair cos = c.rope ? env.input({c.S, c.d}, seed++, 1.0f, DType::kF32) : Pair{};
    const Pair sin = c.rope ? env.input({c.S, c.d}, seed++, 1.0f, DType::kF32) : Pair{};
    for (auto [i, w] : {std::pair{0, &wq}, std::pair{1, &wk}}) {
      const Pair x = view(qkv, [&](const Tensor& t) { return chunk(i, D)(t).unflatten(2, c.H, c.d); });
      env.cpu->rms_norm_rope(x.cpu, x.cpu, w->cpu, cos.cpu, sin.cpu, kEps);
      env.gpu->rms_norm_rope(x.gpu, x.gpu, w->gpu, cos.gpu, sin.gpu, kEps);
    }
    const std::string what = detail::concat("B ", c.B, " S ", c.S, " H ", c.H, " d ", c.d, c.rope ? " rope" : "");
    EXPECT_LE(env.rel(qkv), kTol) << what;
    EXPECT_EQ(test::max_abs_diff(env.gpu->download_f32(chunk(2, D)(qkv.gpu)), v_before), 0.0) << what;
  }
  // Out of place, rows of the joint sequence with the matching rows of the tables.
  const Pair x = env.input({2, 22, 2, 128}, 330);
  const Pair w = env.input({128}, 331);
  const Pair cos = env.input({22, 128}, 332, 1.0f, DType::kF32), sin = env.input({22, 128}, 333, 1.0f, DType::kF32);
  const Pair y = env.poisoned({2, 15, 2, 128});
  const auto rows = [](const Tensor& t) { return t.slice(t.dim() == 2 ? 0 : 1, 7, 15); };
  env.cpu->rms_norm_rope(y.cpu, rows(x.cpu), w.cpu, rows(cos.cpu), rows(sin.cpu), kEps);
  env.gpu->rms_norm_rope(y.gpu, rows(x.gpu), w.gpu, rows(cos.gpu), rows(sin.gpu), kEps);
  EXPECT_LE(env.rel(y), kTol) << "out of place";
}

// q and k in one pass (a block per token), and every layout it hands back to two rms_norm_rope passes: more
// rows than a block has groups, head dims of 64/128/256 and another, rows of the joint sequence (tables offset),
// no RoPE, q and k with different strides. Compared with the CPU's two passes; v must stay untouched.
TEST(CudaOps, QkNormRopeMatchesCpu) {
  PD_GPU_ENV(env);
  struct Case {
    int64_t B, S, H, d;
    bool rope;
    int64_t first = 0;  // first row of the tables (a part of the joint sequence)
  };
  uint64_t seed = 340;
  for (const Case c : {Case{2, 15, 3, 128, true}, Case{1, 4608, 24, 128, true}, Case{2, 9, 80, 128, true},
                       Case{2, 7, 5, 64, true}, Case{1, 6, 7, 256, true}, Case{1, 5, 2, 38, true},
                       Case{2, 7, 3, 128, false}, Case{1, 11, 6, 128, true, 5}}) {
    const int64_t D = c.H * c.d, T = c.first + c.S;
    const Pair qkv = env.input({c.B, c.S, 3 * D}, seed++, 3.0f);
    const Tensor v_before = env.gpu->download_f32(chunk(2, D)(qkv.gpu));
    const Pair wq = env.input({c.d}, seed++), wk = env.input({c.d}, seed++);
    const Pair cos = c.rope ? env.input({T, c.d}, seed++, 1.0f, DType::kF32) : Pair{};
    const Pair sin = c.rope ? env.input({T, c.d}, seed++, 1.0f, DType::kF32) : Pair{};
    const auto rows = [&](const Tensor& t) { return t.defined() ? t.slice(0, c.first, c.S) : t; };
    const auto heads = [&](int i) {
      return view(qkv, [&](const Tensor& t) { return chunk(i, D)(t).unflatten(2, c.H, c.d); });
    };
    const Pair q = heads(0), k = heads(1);
    env.cpu->rms_norm_rope(q.cpu, q.cpu, wq.cpu, rows(cos.cpu), rows(sin.cpu), kEps);
    env.cpu->rms_norm_rope(k.cpu, k.cpu, wk.cpu, rows(cos.cpu), rows(sin.cpu), kEps);
    env.gpu->qk_norm_rope(q.gpu, k.gpu, wq.gpu, wk.gpu, rows(cos.gpu), rows(sin.gpu), kEps);
    const std::string what = detail::concat("B ", c.B, " S ", c.S, " H ", c.H, " d ", c.d, c.rope ? " rope" : "",
                                            " from row ", c.first);
    EXPECT_LE(env.rel(qkv), kTol) << what;
    EXPECT_EQ(test::max_abs_diff(env.gpu->download_f32(chunk(2, D)(qkv.gpu)), v_before), 0.0) << what;
  }
  // q packed, k contiguous on its own: different strides.
  const Pair qkv = env.input({2, 13, 3 * 4 * 128}, 360, 3.0f), k = env.input({2, 13, 4, 128}, 361, 3.0f);
  const Pair q = view(qkv, [](const Tensor& t) { return chunk(0, 4 * 128)(t).unflatten(2, 4, 128); });
  const Pair wq = env.input({128}, 362), wk = env.input({128}, 363);
  const Pair cos = env.input({13, 128}, 364, 1.0f, DType::kF32), sin = env.input({13, 128}, 365, 1.0f, DType::kF32);
  env.cpu->qk_norm_rope(q.cpu, k.cpu, wq.cpu, wk.cpu, cos.cpu, sin.cpu, kEps);
  env.gpu->qk_norm_rope(q.gpu, k.gpu, wq.gpu, wk.gpu, cos.gpu, sin.gpu, kEps);
  EXPECT_LE(env.rel(qkv), kTol) << "q of packed qkv";
  EXPECT_LE(env.rel(k), kTol) << "k on its own";
}

// ---------------------------------------------------------------------------------------------------------------
// Attention

TEST(CudaOps, AttentionMatchesCpu) {
  PD_GPU_ENV(env);
  struct Case {
    int64_t B, Sq, Skv, H, d;
    bool lse;
  };
  uint64_t seed = 400;
  for (const Case c : {Case{2, 7, 7, 3, 128, true}, Case{2, 15, 15, 2, 128, true}, Case{2, 15, 33, 2, 64, true},
                       Case{1, 4608, 4608, 4, 128, true}, Case{2, 15, 15, 3, 128, false}}) {
    const int64_t D = c.H * c.d;
    // q/k/v: views into packed [B, S, 3D] buffers (k and v from a second buffer when Skv differs), as the model
    // makes them; out: columns [0, D) of a [B, Sq, 5D] concat buffer.
    const Pair qkv = env.input({c.B, c.Sq, 3 * D}, seed++);
    const Pair kv = c.Skv == c.Sq ? qkv : env.input({c.B, c.Skv, 3 * D}, seed++);
    const auto heads = [&](int64_t i) {
      return [=](const Tensor& t) { return chunk(i, D)(t).unflatten(2, c.H, c.d); };
    };
    const Pair q = view(qkv, heads(0)), k = view(kv, heads(1)), v = view(kv, heads(2));
    const Pair cat = env.poisoned({c.B, c.Sq, 5 * D});
    const Pair out = view(cat, heads(0));
    const Pair lse = c.lse ? env.poisoned({c.B, c.H, c.Sq}, DType::kF32) : Pair{};
    const float scale = float(1.0 / std::sqrt(double(c.d)));
    env.cpu->attention(out.cpu, lse.cpu, q.cpu, k.cpu, v.cpu, scale);
    env.gpu->attention(out.gpu, lse.gpu, q.gpu, k.gpu, v.gpu, scale);
    const std::string what =
        detail::concat("B ", c.B, " Sq ", c.Sq, " Skv ", c.Skv, " H ", c.H, " d ", c.d, c.lse ? " lse" : "");
    EXPECT_LE(env.rel(out), kTol) << what;
    EXPECT_EQ(env.nan_count(cat.gpu), cat.gpu.numel() - out.gpu.numel()) << what;
    if (c.lse) EXPECT_LE(env.max_abs(lse), 1e-2) << what << " (lse)";
  }
}

TEST(CudaOps, AttentionWithoutKeysGivesZeroWeight) {
  PD_GPU_ENV(env);
  const Pair q = env.input({1, 5, 2, 64}, 450);
  const Pair kv = env.input({1, 0, 2, 64}, 451);
  const Pair out = env.poisoned({1, 5, 2, 64});
  const Pair lse = env.poisoned({1, 2, 5}, DType::kF32);
  env.gpu->attention(out.gpu, lse.gpu, q.gpu, kv.gpu, kv.gpu, 0.125f);
  const Tensor o = env.gpu->download_f32(out.gpu), l = env.gpu->download_f32(lse.gpu);
  for (int64_t i = 0; i < o.numel(); ++i) ASSERT_EQ(o.data_as<float>()[i], 0.0f);
  for (int64_t i = 0; i < l.numel(); ++i) ASSERT_EQ(l.data_as<float>()[i], -std::numeric_limits<float>::infinity());
}

// ---------------------------------------------------------------------------------------------------------------
// Elementwise

TEST(CudaOps, ElementwiseMatchesCpu) {
  PD_GPU_ENV(env);
  uint64_t seed = 500;
  // Vectorised (width 256) and scalar (width 100, rows not 16-byte aligned) paths; bf16 and f32.
  for (DType dt : {DType::kBF16, DType::kF32}) {
    for (const int64_t D : {int64_t(256), int64_t(100)}) {
      const std::string what = detail::concat(dtype_name(dt), " D ", D);
      const Pair a = env.input({2, 15, D}, seed++, 2.0f, dt), b = env.input({2, 15, D}, seed++, 2.0f, dt);
      // y into a column slice of a wider buffer.
      const Pair ybuf = env.poisoned({2, 15, 2 * D}, dt);
      const Pair y = view(ybuf, chunk(1, D));
      env.cpu->silu(y.cpu, a.cpu);
      env.gpu->silu(y.gpu, a.gpu);
      EXPECT_LE(env.rel(y), kTol) << "silu " << what;
      EXPECT_EQ(env.nan_count(ybuf.gpu), ybuf.gpu.numel() - y.gpu.numel()) << what;
      env.cpu->gelu_tanh(y.cpu, b.cpu);
      env.gpu->gelu_tanh(y.gpu, b.gpu);
      EXPECT_LE(env.rel(y), kTol) << "gelu_tanh " << what;
      env.cpu->add(y.cpu, a.cpu, b.cpu);
      env.gpu->add(y.gpu, a.gpu, b.gpu);
      EXPECT_LE(env.rel(y), kTol) << "add " << what;
      // In place.
      env.cpu->gelu_tanh(a.cpu, a.cpu);
      env.gpu->gelu_tanh(a.gpu, a.gpu);
      EXPECT_LE(env.rel(a), kTol) << "gelu_tanh in place " << what;
      env.cpu->add(b.cpu, b.cpu, a.cpu);
      env.gpu->add(b.gpu, b.gpu, a.gpu);
      EXPECT_LE(env.rel(b), kTol) << "add in place " << what;
      // Gated add with the gate a chunk of a [B, 6D] modulation buffer, x rows of a joint sequence.
      const Pair z = env.input({2, 22, D}, seed++, 1.0f, dt);
      const Pair mod = env.input({2, 6 * D}, seed++, 1.0f, dt);
      const Pair x = view(z, [](const Tensor& t) { return t.slice(1, 7, 15); });
      env.cpu->gated_add(x.cpu, a.cpu, view(mod, chunk(5, D)).cpu);
      env.gpu->gated_add(x.gpu, a.gpu, view(mod, chunk(5, D)).gpu);
      EXPECT_LE(env.rel(z), kTol) << "gated_add " << what;
    }
  }
  // Long rows, the model's size.
  const Pair a = env.input({1, 4608, 3072}, seed++);
  const Pair y = env.poisoned({1, 4608, 3072});
  env.cpu->gelu_tanh(y.cpu, a.cpu);
  env.gpu->gelu_tanh(y.gpu, a.gpu);
  EXPECT_LE(env.rel(y), kTol) << "gelu_tanh 4608 x 3072";
}

// ---------------------------------------------------------------------------------------------------------------
// Errors and bookkeeping

TEST(CudaOps, BadArgumentsThrowClearErrors) {
  PD_GPU_ENV(env);
  Backend& gpu = *env.gpu;
  const Tensor x = gpu.empty({2, 7, 64}), w = gpu.empty({32, 64}), y = gpu.empty({2, 7, 32});
  const Tensor x32 = gpu.empty({2, 7, 64}, DType::kF32);
  const Tensor host = Tensor::empty({2, 7, 64}, DType::kBF16, cpu_allocator());
  EXPECT_EQ(code_of([&] { gpu.linear(y, x32, w, Tensor(), Epilogue::kNone); }), StatusCode::kInvalidArgument);
  EXPECT_EQ(code_of([&] { gpu.linear(y, host, w, Tensor(), Epilogue::kNone); }), StatusCode::kInvalidArgument);
  EXPECT_EQ(code_of([&] { gpu.linear(gpu.empty({2, 7, 31}), x, w, Tensor(), Epilogue::kNone); }),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(code_of([&] { gpu.layer_norm_modulate(y, x, Tensor(), Tensor(), kEps); }), StatusCode::kInvalidArgument);
  EXPECT_EQ(code_of([&] { gpu.add(x, x, y); }), StatusCode::kInvalidArgument);
  EXPECT_EQ(code_of([&] { gpu.copy(gpu.empty({3}), gpu.empty({4})); }), StatusCode::kInvalidArgument);
  try {
    gpu.linear(y, x32, w, Tensor(), Epilogue::kNone);
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("linear"), std::string::npos) << e.what();
  }
  // The backend keeps working after refusing.
  gpu.fill(y, 2.0f);
  EXPECT_EQ(gpu.download_f32(y).data_as<float>()[0], 2.0f);
}

TEST(CudaOps, ReportsPeakMemory) {
  PD_GPU_ENV(env);
  CudaBackend* cuda = as_cuda_backend(*env.gpu);
  ASSERT_NE(cuda, nullptr);
  EXPECT_EQ(as_cuda_backend(*env.cpu), nullptr);
  cuda->reset_peak();
  const size_t before = cuda->peak_bytes();
  {
    Tensor big = env.gpu->empty({64, 1024, 1024});  // 128 MiB
    EXPECT_GE(cuda->memory_stats().in_use, before + (size_t(128) << 20));
  }
  EXPECT_GE(cuda->peak_bytes(), before + (size_t(128) << 20));
  cuda->reset_peak();
  EXPECT_LT(cuda->peak_bytes(), before + (size_t(128) << 20));
  EXPECT_NE(cuda->stream(), nullptr);
  EXPECT_NE(env.gpu->name().find("cuda:0"), std::string::npos);
}

}  // namespace
}  // namespace paradit
