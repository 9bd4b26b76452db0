// The CPU backend, op by op, against the float64 references in support/reference_ops: random inputs, outputs
// poisoned with NaN, strided views (slices of bigger buffers) on both sides, odd sizes, and 1, 2 and 3 threads
// (tiling and row splitting differ with the thread count).
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <thread>
#include <vector>

#include "paradit/backend/backend.h"
#include "paradit/core/random.h"
#include "paradit/core/status.h"
#include "reference_ops.h"
#include "test_util.h"

namespace paradit {
namespace {

using test::count_written;
using test::expect_invalid;
using test::host_assign;

constexpr double kTol = 1e-5;  // relative L2 for fp32 ops (DESIGN.md)



Tensor copy_of(const Tensor& t) { return test::to_contiguous_f32(t); }

// cos/sin tables [S, d] as FLUX builds them: angle (s + 1)·10000^(−2k/d), repeated for both lanes of a pair.
void rope_tables(int64_t S, int64_t d, Tensor* cos, Tensor* sin) {
  *cos = Tensor::empty({S, d}, DType::kF32, cpu_allocator());
  *sin = Tensor::empty({S, d}, DType::kF32, cpu_allocator());
  for (int64_t s = 0; s < S; ++s)
    for (int64_t i = 0; i < d; ++i) {
      const double theta = double(s + 1) * std::pow(10000.0, -2.0 * double(i / 2) / double(d));
      cos->data_as<float>()[s * d + i] = float(std::cos(theta));
      sin->data_as<float>()[s * d + i] = float(std::sin(theta));
    }
}

class CpuOps : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override { be = create_cpu_backend(GetParam()); }
  std::unique_ptr<Backend> be;
};

INSTANTIATE_TEST_SUITE_P(Threads, CpuOps, ::testing::Values(1, 2, 3),
                         [](const auto& info) { return "t" + std::to_string(info.param); });

// ---------------------------------------------------------------------------------------------- copy / fill

TEST_P(CpuOps, CopyStridedF32) {
  Tensor src = test::random_host({5, 7, 9}, 1);
  Tensor buf = test::poisoned_host({9, 7, 5});
  Tensor dst = buf.transpose(0, 2);  // every stride differs from src's, the last one is not 1
  be->copy(dst, src);
  EXPECT_EQ(test::max_abs_diff(dst, src), 0.0);
  // Into a column slice of a wider buffer, from a strided source.
  Tensor sbuf = test::random_host({3, 11, 40}, 2);
  Tensor s = sbuf.slice(2, 5, 17).slice(1, 2, 6);
  Tensor dbuf = test::poisoned_host({3, 6, 30});
  Tensor d = dbuf.slice(2, 13, 17);
  be->copy(d, s);
  EXPECT_EQ(test::max_abs_diff(d, s), 0.0);
  EXPECT_EQ(count_written(dbuf), d.numel());
}

TEST_P(CpuOps, CopyConvertsHalfTypes) {
  const Shape shape{4, 13, 37};
  Tensor f = test::random_host(shape, 3, 2.0f);
  Tensor bf = Tensor::empty(shape, DType::kBF16, cpu_allocator());
  Tensor hf = Tensor::empty(shape, DType::kF16, cpu_allocator());
  for (int64_t i = 0; i < f.numel(); ++i) {
    bf.data_as<uint16_t>()[i] = f32_to_bf16(f.data_as<float>()[i]);
    hf.data_as<uint16_t>()[i] = f32_to_f16(f.data_as<float>()[i]);
  }
  // bf16/f16 -> f32, from strided views into a strided destination.
  for (const Tensor* src : {&bf, &hf}) {
    Tensor sv = src->slice(2, 3, 30);
    Tensor dbuf = test::poisoned_host({4, 13, 31});
    Tensor dv = dbuf.slice(2, 1, 30);
    be->copy(dv, sv);
    Tensor c = copy_of(dv);
    for (int64_t b = 0; b < 4; ++b)
      for (int64_t s = 0; s < 13; ++s)
        for (int64_t j = 0; j < 30; ++j) {
          const uint16_t h = src->data_as<uint16_t>()[(b * 13 + s) * 37 + 3 + j];
          const float want = src->dtype() == DType::kBF16 ? bf16_to_f32(h) : f16_to_f32(h);
          ASSERT_EQ(c.data_as<float>()[(b * 13 + s) * 30 + j], want) << dtype_name(src->dtype());
        }
    EXPECT_EQ(count_written(dbuf), dv.numel());
  }
  // f32 -> bf16/f16 rounds to nearest even, element for element, contiguous (a single long run) and strided.
  Tensor bf2 = Tensor::empty(shape, DType::kBF16, cpu_allocator());
  Tensor hf2 = Tensor::empty(shape, DType::kF16, cpu_allocator());
  be->copy(bf2, f);
  be->copy(hf2.transpose(0, 1).transpose(0, 1), f);
  for (int64_t i = 0; i < f.numel(); ++i) {
    ASSERT_EQ(bf2.data_as<uint16_t>()[i], bf.data_as<uint16_t>()[i]) << i;
    ASSERT_EQ(hf2.data_as<uint16_t>()[i], hf.data_as<uint16_t>()[i]) << i;
  }
  // A long contiguous run (cut into pieces across threads) and bf16 -> f16.
  Tensor big = test::random_host({100003}, 4);
  Tensor big_bf = Tensor::empty({100003}, DType::kBF16, cpu_allocator());
  Tensor big_h = Tensor::empty({100003}, DType::kF16, cpu_allocator());
  be->copy(big_bf, big);
  be->copy(big_h, big_bf);
  for (int64_t i = 0; i < big.numel(); ++i) {
    const float v = bf16_to_f32(f32_to_bf16(big.data_as<float>()[i]));
    ASSERT_EQ(big_bf.data_as<uint16_t>()[i], f32_to_bf16(big.data_as<float>()[i])) << i;
    ASSERT_EQ(big_h.data_as<uint16_t>()[i], f32_to_f16(v)) << i;
  }
}

TEST_P(CpuOps, CopyFromFp8) {
  Tensor f8 = Tensor::empty({2, 128}, DType::kF8E4M3, cpu_allocator());
  for (int i = 0; i < 256; ++i) f8.data_as<uint8_t>()[i] = uint8_t(i);
  Tensor out = test::poisoned_host({2, 128});
  be->copy(out, f8);
  for (int i = 0; i < 256; ++i) {
    const float want = f8e4m3_to_f32(uint8_t(i));
    const float got = out.data_as<float>()[i];
    if (std::isnan(want)) EXPECT_TRUE(std::isnan(got)) << i;
    else EXPECT_EQ(got, want) << i;
  }
  Tensor bad = Tensor::empty({2, 128}, DType::kF8E4M3, cpu_allocator());
  try {
    be->copy(bad, out);
    ADD_FAILURE() << "copy to fp8 should be refused";
  } catch (const Error& e) {
    EXPECT_EQ(e.status().code(), StatusCode::kUnimplemented) << e.what();
  }
}

TEST_P(CpuOps, Fill) {
  Tensor buf = test::poisoned_host({3, 5, 20});
  Tensor v = buf.slice(2, 4, 9);
  be->fill(v, 2.5f);
  EXPECT_EQ(count_written(buf), v.numel());
  Tensor c = copy_of(v);
  for (int64_t i = 0; i < c.numel(); ++i) ASSERT_EQ(c.data_as<float>()[i], 2.5f);
  Tensor h = Tensor::empty({70000}, DType::kBF16, cpu_allocator());
  be->fill(h, -1.0f / 3.0f);
  for (int64_t i = 0; i < h.numel(); ++i) ASSERT_EQ(h.data_as<uint16_t>()[i], f32_to_bf16(-1.0f / 3.0f));
}

TEST_P(CpuOps, FillRandomMatchesFormulaAndLaw) {
  const uint64_t seed = 1234;
  const float stddev = 0.02f;
  Tensor t = test::poisoned_host({1000, 1001});
  be->fill_random(t, seed, stddev);
  // Bit-exact against the shared generator (the CUDA backend uses the same function).
  for (int64_t i = 0; i < t.numel(); ++i)
    ASSERT_EQ(t.data_as<float>()[i], random_uniform_value(seed, uint64_t(i), stddev)) << i;
  // Against an independent double implementation of the formula.
  EXPECT_LE(test::rel_l2(t, test::ref::fill_random(t.shape(), seed, stddev)), 1e-6);
  // The law: uniform with mean 0 and the requested standard deviation (n = 1e6: 5σ/√n ≈ 0.005σ).
  double sum = 0, sq = 0;
  for (int64_t i = 0; i < t.numel(); ++i) {
    sum += t.data_as<float>()[i];
    sq += double(t.data_as<float>()[i]) * t.data_as<float>()[i];
  }
  const double n = double(t.numel()), mean = sum / n, sd = std::sqrt(sq / n - mean * mean);
  EXPECT_LT(std::fabs(mean), 0.005 * stddev);
  EXPECT_NEAR(sd, stddev, 0.005 * stddev);
  float lo = 1e9f, hi = -1e9f;
  for (int64_t i = 0; i < t.numel(); ++i) {
    lo = std::min(lo, t.data_as<float>()[i]);
    hi = std::max(hi, t.data_as<float>()[i]);
  }
  EXPECT_GE(lo, -stddev * std::sqrt(3.0f) * 1.0001f);
  EXPECT_LE(hi, stddev * std::sqrt(3.0f) * 1.0001f);
  EXPECT_LT(lo, -0.99f * stddev * std::sqrt(3.0f));
  // A strided view gets the values of its own row-major index, not of the buffer's.
  Tensor buf = test::poisoned_host({7, 20});
  Tensor v = buf.slice(1, 3, 11);
  be->fill_random(v, seed, stddev);
  EXPECT_EQ(count_written(buf), v.numel());
  Tensor vc = copy_of(v);
  for (int64_t i = 0; i < vc.numel(); ++i)
    ASSERT_EQ(vc.data_as<float>()[i], random_uniform_value(seed, uint64_t(i), stddev)) << i;
  // bf16: the f32 value rounded once.
  Tensor h = Tensor::empty({3, 333}, DType::kBF16, cpu_allocator());
  be->fill_random(h, 7, 1.0f);
  for (int64_t i = 0; i < h.numel(); ++i)
    ASSERT_EQ(h.data_as<uint16_t>()[i], f32_to_bf16(random_uniform_value(7, uint64_t(i), 1.0f))) << i;
  // Different seeds give different values.
  Tensor a = test::poisoned_host({64}), b = test::poisoned_host({64});
  be->fill_random(a, 1, 1.0f);
  be->fill_random(b, 2, 1.0f);
  EXPECT_GT(test::max_abs_diff(a, b), 0.1);
}

// ---------------------------------------------------------------------------------------------------- linear

struct LinearCase {
  const char* what;
  Tensor x, w, bias, ybuf, y;
  Epilogue ep;
};

std::vector<LinearCase> linear_cases() {
  std::vector<LinearCase> cs;
  {  // contiguous [B, S, K], bias
    Tensor y = test::poisoned_host({2, 7, 45});
    cs.push_back({"contiguous", test::random_host({2, 7, 77}, 10), test::random_host({45, 77}, 11, 0.1f),
                  test::random_host({45}, 12), y, y, Epilogue::kNone});
  }
  {  // x a column slice (row stride 100), y a column slice of a wider buffer, GELU
    Tensor xb = test::random_host({2, 15, 100}, 13);
    Tensor yb = test::poisoned_host({2, 15, 300});
    cs.push_back({"column slices + gelu", xb.slice(2, 10, 77), test::random_host({130, 77}, 14, 0.1f),
                  test::random_host({130}, 15), yb, yb.slice(2, 100, 130), Epilogue::kGeluTanh});
  }
  {  // batch stride != S·row stride (x is a [S, B, K] buffer seen as [B, S, K]); no bias, GELU
    Tensor xb = test::random_host({15, 2, 64}, 16);
    Tensor yb = test::poisoned_host({2, 16, 96});
    cs.push_back({"transposed batch", xb.transpose(0, 1), test::random_host({96, 64}, 17, 0.1f), Tensor(), yb,
                  yb.slice(1, 1, 15), Epilogue::kGeluTanh});
  }
  {  // w a column range of a wider weight (row stride 120), as a GEMM split over its input columns takes it
    Tensor y = test::poisoned_host({2, 7, 45});
    cs.push_back({"weight column slice", test::random_host({2, 7, 77}, 27),
                  test::random_host({45, 120}, 28, 0.1f).slice(1, 20, 77), test::random_host({45}, 29), y, y,
                  Epilogue::kNone});
  }
  {  // 2-D [M, K], larger
    Tensor y = test::poisoned_host({33, 520});
    cs.push_back({"2d", test::random_host({33, 300}, 18), test::random_host({520, 300}, 19, 0.05f),
                  test::random_host({520}, 20), y, y, Epilogue::kNone});
  }
  {  // one row, many outputs (split over columns)
    Tensor y = test::poisoned_host({1, 1, 1000});
    cs.push_back({"single row", test::random_host({1, 1, 256}, 21), test::random_host({1000, 256}, 22, 0.05f),
                  test::random_host({1000}, 23), y, y, Epilogue::kGeluTanh});
  }
  {  // broadcast rows (row stride 0), batch 2
    Tensor xb = test::random_host({2, 40}, 24);
    Tensor x = Tensor::borrow(xb.data(), {2, 5, 40}, {40, 0, 1}, DType::kF32, Device::cpu());
    Tensor y = test::poisoned_host({2, 5, 24});
    cs.push_back({"broadcast rows", x, test::random_host({24, 40}, 25, 0.1f), test::random_host({24}, 26), y, y,
                  Epilogue::kNone});
    cs.back().x = x;
    cs.back().ybuf = y;
    static Tensor keep;  // borrow() does not own: keep the buffer alive for the test's lifetime
    keep = xb;
  }
  return cs;
}

TEST_P(CpuOps, Linear) {
  for (auto& c : linear_cases()) {
    be->linear(c.y, c.x, c.w, c.bias, c.ep);
    const Tensor want = test::ref::linear(c.x, c.w, c.bias, c.ep);
    EXPECT_LE(test::rel_l2(c.y, want), kTol) << c.what;
    EXPECT_EQ(count_written(c.ybuf), c.y.numel()) << c.what;
  }
}

// y += x·wᵀ on the cases' shapes and strides (bias and epilogue aside): y starts random, what lies outside the
// y view stays as it was.
TEST_P(CpuOps, LinearAccumulate) {
  uint64_t seed = 300;
  for (auto& c : linear_cases()) {
    const Tensor start = test::random_host(c.ybuf.shape(), seed++);
    std::copy_n(start.data_as<float>(), start.numel(), c.ybuf.data_as<float>());
    const Tensor before = test::ref::linear(c.x, c.w, Tensor(), Epilogue::kNone);
    const Tensor y0 = test::to_contiguous_f32(c.y);
    be->linear_accumulate(c.y, c.x, c.w);
    Tensor want = test::to_contiguous_f32(c.y);
    for (int64_t i = 0; i < want.numel(); ++i)
      want.data_as<float>()[i] = y0.data_as<float>()[i] + before.data_as<float>()[i];
    EXPECT_LE(test::rel_l2(c.y, want), kTol) << c.what;
    int64_t changed = 0;  // elements of the buffer that moved: those of the view only
    for (int64_t i = 0; i < start.numel(); ++i) changed += c.ybuf.data_as<float>()[i] != start.data_as<float>()[i];
    EXPECT_LE(changed, c.y.numel()) << c.what;
    EXPECT_GT(changed, c.y.numel() / 2) << c.what;
  }
}

// --------------------------------------------------------------------------------------------------- norms

TEST_P(CpuOps, LayerNormModulate) {
  for (int64_t D : {77, 200, 3072}) {
    const int64_t B = 2, S = D == 3072 ? 3 : 15;
    Tensor xb = test::random_host({B, S, D + 5}, 40 + D);
    for (int64_t i = 0; i < xb.numel(); ++i) xb.data_as<float>()[i] += 3.0f;  // a mean far from zero
    Tensor x = xb.slice(2, 2, D);
    Tensor mod = test::random_host({B, 6 * D}, 41 + D, 0.5f);
    Tensor shift = mod.slice(1, 0, D), scale = mod.slice(1, D, D);
    Tensor ybuf = test::poisoned_host({B, S, 2 * D});
    Tensor y = ybuf.slice(2, D, D);
    be->layer_norm_modulate(y, x, shift, scale, 1e-6f);
    EXPECT_LE(test::rel_l2(y, test::ref::layer_norm_modulate(x, shift, scale, 1e-6f)), kTol) << D;
    EXPECT_EQ(count_written(ybuf), y.numel());
    Tensor plain = test::poisoned_host({B, S, D});
    be->layer_norm_modulate(plain, x, Tensor(), Tensor(), 1e-6f);
    EXPECT_LE(test::rel_l2(plain, test::ref::layer_norm_modulate(x, Tensor(), Tensor(), 1e-6f)), kTol) << D;
  }
  // In place.
  Tensor x = test::random_host({2, 7, 33}, 49);
  Tensor mod = test::random_host({2, 66}, 50);
  const Tensor want = test::ref::layer_norm_modulate(x, mod.slice(1, 0, 33), mod.slice(1, 33, 33), 1e-5f);
  be->layer_norm_modulate(x, x, mod.slice(1, 0, 33), mod.slice(1, 33, 33), 1e-5f);
  EXPECT_LE(test::rel_l2(x, want), kTol);
}

// The residual update and the LayerNorm after it, fused: z is updated in place, y gets the normalised new z.
TEST_P(CpuOps, GatedAddLayerNormModulate) {
  for (int64_t D : {77, 3072}) {
    const int64_t B = 2, S = D == 3072 ? 3 : 15;
    const Tensor zbuf = test::random_host({B, S + 4, D}, 60 + D, 2.0f);
    const Tensor z = zbuf.slice(1, 2, S);
    const Tensor delta = test::random_host({B, S, D}, 61 + D);
    const Tensor mod = test::random_host({B, 6 * D}, 62 + D, 0.5f);
    const Tensor gate = mod.slice(1, 5 * D, D), shift = mod.slice(1, 3 * D, D), scale = mod.slice(1, 4 * D, D);
    const Tensor z_want = test::ref::gated_add(z, delta, gate);
    const Tensor y_want = test::ref::layer_norm_modulate(z_want, shift, scale, 1e-6f);
    Tensor y = test::poisoned_host({B, S, D});
    be->gated_add_layer_norm_modulate(y, z, delta, gate, shift, scale, 1e-6f);
    EXPECT_LE(test::rel_l2(z, z_want), kTol) << D;
    EXPECT_LE(test::rel_l2(y, y_want), kTol) << D;
  }
  // A bad shift is refused before z is touched.
  const Tensor z = test::random_host({1, 4, 8}, 70);
  const Tensor before = test::random_host({1, 4, 8}, 70);
  EXPECT_THROW(be->gated_add_layer_norm_modulate(test::poisoned_host({1, 4, 8}), z, test::random_host({1, 4, 8}, 71),
                                                 test::random_host({1, 8}, 72), test::random_host({1, 7}, 73),
                                                 test::random_host({1, 8}, 74), 1e-6f),
               Error);
  EXPECT_EQ(test::rel_l2(z, before), 0.0);
}

TEST_P(CpuOps, RmsNormRope) {
  for (int64_t d : {16, 128}) {
    for (int64_t S : {7, 15}) {
      const int64_t B = 2, H = 3;
      Tensor qkv = test::random_host({B, S, 3, H, d}, 60 + S + d);
      Tensor k = qkv.select(2, 1);  // strides (S·3·H·d, 3·H·d, d, 1)
      Tensor weight = test::random_host({d}, 61, 0.5f);
      Tensor cos, sin;
      rope_tables(S, d, &cos, &sin);
      Tensor ybuf = test::poisoned_host({B, S, 2, H, d});
      Tensor y = ybuf.select(2, 0);
      be->rms_norm_rope(y, k, weight, cos, sin, 1e-6f);
      EXPECT_LE(test::rel_l2(y, test::ref::rms_norm_rope(k, weight, cos, sin, 1e-6f)), kTol) << d << " " << S;
      EXPECT_EQ(count_written(ybuf), y.numel());
      // No RoPE; cos/sin as strided views.
      Tensor y2 = test::poisoned_host({B, S, H, d});
      be->rms_norm_rope(y2, k, weight, Tensor(), Tensor(), 1e-6f);
      EXPECT_LE(test::rel_l2(y2, test::ref::rms_norm_rope(k, weight, Tensor(), Tensor(), 1e-6f)), kTol);
      Tensor tb = test::poisoned_host({2, S, d + 4});
      host_assign(tb.select(0, 0).slice(1, 4, d), cos);
      host_assign(tb.select(0, 1).slice(1, 4, d), sin);
      Tensor y3 = test::poisoned_host({B, S, H, d});
      be->rms_norm_rope(y3, k, weight, tb.select(0, 0).slice(1, 4, d), tb.select(0, 1).slice(1, 4, d), 1e-6f);
      EXPECT_LE(test::rel_l2(y3, y), 1e-7);
      // Arbitrary tables (cos[2k] != cos[2k+1]) pin down which lane reads which table entry.
      Tensor rc = test::random_host({S, d}, 62), rs = test::random_host({S, d}, 63);
      Tensor y4 = test::poisoned_host({B, S, H, d});
      be->rms_norm_rope(y4, k, weight, rc, rs, 1e-6f);
      EXPECT_LE(test::rel_l2(y4, test::ref::rms_norm_rope(k, weight, rc, rs, 1e-6f)), kTol);
    }
  }
}

TEST_P(CpuOps, RmsNormRopeInPlace) {
  const int64_t B = 2, S = 15, H = 3, d = 128;
  Tensor qkv = test::random_host({B, S, 3, H, d}, 70);
  Tensor q = qkv.select(2, 0);
  Tensor weight = test::random_host({d}, 71);
  Tensor cos, sin;
  rope_tables(S, d, &cos, &sin);
  const Tensor want = test::ref::rms_norm_rope(q, weight, cos, sin, 1e-6f);
  const Tensor k_before = copy_of(qkv.select(2, 1));
  be->rms_norm_rope(q, q, weight, cos, sin, 1e-6f);
  EXPECT_LE(test::rel_l2(q, want), kTol);
  EXPECT_EQ(test::max_abs_diff(qkv.select(2, 1), k_before), 0.0) << "k, beside q in the buffer, was touched";
}

// ------------------------------------------------------------------------------------------------ attention

struct AttentionShape {
  int64_t B, Sq, Skv, H, d;
};

TEST_P(CpuOps, Attention) {
  const std::vector<AttentionShape> shapes = {
      {2, 7, 7, 3, 16}, {2, 15, 15, 2, 128}, {1, 130, 70, 2, 16}, {2, 7, 150, 1, 128}, {1, 1, 5, 4, 16}};
  for (const auto& sh : shapes) {
    SCOPED_TRACE(testing::Message() << "B" << sh.B << " Sq" << sh.Sq << " Skv" << sh.Skv << " H" << sh.H << " d"
                                    << sh.d);
    // q from one packed [B, S, 3, H, d] buffer, k and v from another (self-attention when Sq == Skv).
    Tensor qbuf = test::random_host({sh.B, sh.Sq, 3, sh.H, sh.d}, 80 + sh.Sq);
    Tensor kvbuf = sh.Sq == sh.Skv ? qbuf : test::random_host({sh.B, sh.Skv, 3, sh.H, sh.d}, 81 + sh.Skv);
    Tensor q = qbuf.select(2, 0), k = kvbuf.select(2, 1), v = kvbuf.select(2, 2);
    Tensor obuf = test::poisoned_host({sh.B, sh.Sq, sh.H, sh.d + 8});
    Tensor out = obuf.slice(3, 4, sh.d);
    Tensor lbuf = test::poisoned_host({sh.B, sh.H, sh.Sq + 3});
    Tensor lse = lbuf.slice(2, 1, sh.Sq);
    const float scale = 1.0f / std::sqrt(float(sh.d));
    be->attention(out, lse, q, k, v, scale);
    Tensor want_lse;
    const Tensor want = test::ref::attention(q, k, v, scale, &want_lse);
    EXPECT_LE(test::rel_l2(out, want), kTol);
    EXPECT_LE(test::rel_l2(lse, want_lse), kTol);
    EXPECT_LE(test::max_abs_diff(lse, want_lse), 1e-5);  // ring attention weighs partials by exp(Δlse)
    EXPECT_EQ(count_written(obuf), out.numel());
    EXPECT_EQ(count_written(lbuf), lse.numel());
    // Without lse.
    Tensor out2 = test::poisoned_host({sh.B, sh.Sq, sh.H, sh.d});
    be->attention(out2, Tensor(), q, k, v, scale);
    EXPECT_LE(test::rel_l2(out2, want), kTol);
  }
}

TEST_P(CpuOps, AttentionBroadcastViews) {
  // Row stride 0 (every position the same vector) and heads sharing one k row: BLAS cannot take these as
  // they are, so the backend copies them first.
  Tensor qbuf = test::random_host({2, 3, 16}, 94), kbuf = test::random_host({2, 16}, 95);
  Tensor vbuf = test::random_host({2, 70, 3, 16}, 96);
  Tensor q = Tensor::borrow(qbuf.data(), {2, 9, 3, 16}, {48, 0, 16, 1}, DType::kF32, Device::cpu());
  Tensor k = Tensor::borrow(kbuf.data(), {2, 70, 3, 16}, {16, 0, 0, 1}, DType::kF32, Device::cpu());
  Tensor v = vbuf;
  Tensor out = test::poisoned_host({2, 9, 3, 16}), lse = test::poisoned_host({2, 3, 9});
  be->attention(out, lse, q, k, v, 0.3f);
  Tensor want_lse;
  const Tensor want = test::ref::attention(q, k, v, 0.3f, &want_lse);
  EXPECT_LE(test::rel_l2(out, want), kTol);
  EXPECT_LE(test::max_abs_diff(lse, want_lse), 1e-5);
}

TEST_P(CpuOps, AttentionLargeLogitsStayStable) {
  // Logits of magnitude ~100: exp would overflow without the max subtraction.
  Tensor q = test::random_host({1, 33, 2, 16}, 90, 3.0f), k = test::random_host({1, 40, 2, 16}, 91, 3.0f);
  Tensor v = test::random_host({1, 40, 2, 16}, 92);
  Tensor out = test::poisoned_host({1, 33, 2, 16}), lse = test::poisoned_host({1, 2, 33});
  be->attention(out, lse, q, k, v, 1.0f);
  Tensor want_lse;
  const Tensor want = test::ref::attention(q, k, v, 1.0f, &want_lse);
  EXPECT_LE(test::rel_l2(out, want), kTol);
  EXPECT_LE(test::rel_l2(lse, want_lse), kTol);
}

TEST_P(CpuOps, AttentionWithoutKeys) {
  // An empty key shard (uneven sequence splits): output 0 and lse −inf, i.e. weight zero in a ring merge.
  Tensor q = test::random_host({1, 5, 2, 16}, 93);
  Tensor k = Tensor::empty({1, 0, 2, 16}, DType::kF32, cpu_allocator()), v = k;
  Tensor out = test::poisoned_host({1, 5, 2, 16}), lse = test::poisoned_host({1, 2, 5});
  be->attention(out, lse, q, k, v, 0.25f);
  for (int64_t i = 0; i < out.numel(); ++i) ASSERT_EQ(out.data_as<float>()[i], 0.0f);
  for (int64_t i = 0; i < lse.numel(); ++i) ASSERT_EQ(lse.data_as<float>()[i], -std::numeric_limits<float>::infinity());
}

// ---------------------------------------------------------------------------------------------- elementwise

TEST_P(CpuOps, Elementwise) {
  Tensor xb = test::random_host({2, 15, 90}, 100, 3.0f);
  Tensor x = xb.slice(2, 3, 77);
  {
    Tensor ybuf = test::poisoned_host({2, 15, 80});
    Tensor y = ybuf.slice(2, 0, 77);
    be->silu(y, x);
    EXPECT_LE(test::rel_l2(y, test::ref::silu(x)), kTol);
    EXPECT_EQ(count_written(ybuf), y.numel());
    be->gelu_tanh(y, x);
    EXPECT_LE(test::rel_l2(y, test::ref::gelu_tanh(x)), kTol);
  }
  {
    Tensor b = test::random_host({2, 15, 77}, 101);
    Tensor y = test::poisoned_host({2, 15, 77});
    be->add(y, x, b);
    EXPECT_LE(test::rel_l2(y, test::ref::add(x, b)), kTol);
  }
  {  // in place, including a long single row (split across threads) and 1-D
    Tensor a = test::random_host({50001}, 102, 4.0f);
    const Tensor want_silu = test::ref::silu(a);
    be->silu(a, a);
    EXPECT_LE(test::rel_l2(a, want_silu), kTol);
    Tensor g = test::random_host({3, 20001}, 103, 4.0f);
    const Tensor want_gelu = test::ref::gelu_tanh(g);
    be->gelu_tanh(g, g);
    EXPECT_LE(test::rel_l2(g, want_gelu), kTol);
    Tensor c = test::random_host({7, 9}, 104), d = test::random_host({7, 9}, 105);
    const Tensor want_add = test::ref::add(c, d);
    be->add(c, c, d);
    EXPECT_LE(test::rel_l2(c, want_add), kTol);
  }
  // Extreme inputs stay finite: silu(−100) = −0, gelu(±20).
  Tensor e = test::poisoned_host({4});
  float vals[4] = {-100.0f, 100.0f, -20.0f, 20.0f};
  Tensor ein = Tensor::borrow(vals, {4}, DType::kF32, Device::cpu());
  be->silu(e, ein);
  EXPECT_LE(test::rel_l2(e, test::ref::silu(ein)), kTol);
  be->gelu_tanh(e, ein);
  EXPECT_LE(test::rel_l2(e, test::ref::gelu_tanh(ein)), kTol);
}

TEST_P(CpuOps, ActivationsAccuratePerElement) {
  // Relative error element by element (not just in L2) over a dense grid, tails included.
  const int64_t n = 120001;
  Tensor x = Tensor::empty({n}, DType::kF32, cpu_allocator());
  for (int64_t i = 0; i < n; ++i) x.data_as<float>()[i] = -60.0f + 120.0f * float(i) / float(n - 1);
  for (bool gelu : {false, true}) {
    Tensor y = test::poisoned_host({n});
    gelu ? be->gelu_tanh(y, x) : be->silu(y, x);
    const Tensor want = gelu ? test::ref::gelu_tanh(x) : test::ref::silu(x);
    double worst = 0;
    for (int64_t i = 0; i < n; ++i) {
      const double w = want.data_as<float>()[i], g = y.data_as<float>()[i];
      if (std::fabs(w) < 1e-30) {
        ASSERT_LE(std::fabs(g), 1e-29) << x.data_as<float>()[i];  // far tails: absolute
        continue;
      }
      // In the tails the exponent's argument a is large and its f32 rounding alone moves e^a by |a|·2^-24.
      const double xi = x.data_as<float>()[i];
      const double a = gelu ? 1.6 * std::fabs(xi + 0.044715 * xi * xi * xi) : std::fabs(xi);
      worst = std::max(worst, std::fabs(g - w) / std::fabs(w) / std::max(1.0, a));
    }
    EXPECT_LE(worst, 5e-7) << (gelu ? "gelu_tanh" : "silu");
  }
}

TEST_P(CpuOps, GatedAdd) {
  const int64_t B = 2, S = 15, D = 77;
  Tensor xbuf = test::random_host({B, S, D + 10}, 110);
  Tensor x = xbuf.slice(2, 5, D);
  Tensor ybuf = test::random_host({B, S, 4, D}, 111);
  Tensor y = ybuf.select(2, 3);
  Tensor mod = test::random_host({B, 6 * D}, 112);
  Tensor gate = mod.slice(1, 5 * D, D);
  Tensor expected = copy_of(xbuf);
  host_assign(expected.slice(2, 5, D), test::ref::gated_add(x, y, gate));
  be->gated_add(x, y, gate);
  EXPECT_LE(test::rel_l2(xbuf, expected), kTol);
  // x += gate ⊙ x.
  Tensor z = test::random_host({1, 3, 20000}, 113);
  Tensor gz = test::random_host({1, 20000}, 114);
  const Tensor want = test::ref::gated_add(z, z, gz);
  be->gated_add(z, z, gz);
  EXPECT_LE(test::rel_l2(z, want), kTol);
}

// ------------------------------------------------------------------------------------------- concurrency

TEST(CpuOpsConcurrency, BackendsOnSeveralThreadsAgree) {
  // CPU ranks are threads, each with its own backend, all calling BLAS at once.
  constexpr int kRanks = 4;
  std::vector<double> errs(kRanks * 2, 1.0);
  std::vector<std::thread> ranks;
  for (int r = 0; r < kRanks; ++r)
    ranks.emplace_back([&, r] {
      auto be = create_cpu_backend(2);
      Tensor x = test::random_host({2, 40, 96}, 200 + r), w = test::random_host({130, 96}, 300 + r, 0.1f);
      Tensor y = test::poisoned_host({2, 40, 130});
      Tensor q = test::random_host({1, 70, 2, 16}, 400 + r), k = test::random_host({1, 90, 2, 16}, 500 + r);
      Tensor o = test::poisoned_host({1, 70, 2, 16});
      for (int it = 0; it < 5; ++it) {
        be->linear(y, x, w, Tensor(), Epilogue::kGeluTanh);
        be->attention(o, Tensor(), q, k, k, 0.25f);
      }
      errs[size_t(2 * r)] = test::rel_l2(y, test::ref::linear(x, w, Tensor(), Epilogue::kGeluTanh));
      errs[size_t(2 * r + 1)] = test::rel_l2(o, test::ref::attention(q, k, k, 0.25f));
    });
  for (auto& t : ranks) t.join();
  for (double e : errs) EXPECT_LE(e, kTol);
}

// ---------------------------------------------------------------------------------------------- bad input

TEST(CpuOpsErrors, BadArgumentsThrowInvalidArgument) {
  auto be = create_cpu_backend(2);
  auto f = [](const Shape& s) { return test::random_host(s, 7); };
  Tensor x = f({2, 7, 32}), w = f({16, 32}), y = f({2, 7, 16}), bias = f({16}), gate = f({2, 16});
  Tensor bfx = Tensor::empty({2, 7, 32}, DType::kBF16, cpu_allocator());
  float dummy[4];
  Tensor gpu = Tensor::borrow(dummy, {2, 7, 16}, DType::kF32, Device::cuda(0));  // never dereferenced

  expect_invalid([&] { be->linear(y, f({2, 7, 31}), w, bias, Epilogue::kNone); }, "linear");
  expect_invalid([&] { be->linear(f({2, 7, 15}), x, w, bias, Epilogue::kNone); }, "linear");
  expect_invalid([&] { be->linear(y, x, w, f({15}), Epilogue::kNone); }, "linear");
  expect_invalid([&] { be->linear(y, x, f({16, 32, 1}), bias, Epilogue::kNone); }, "linear");
  expect_invalid([&] { be->linear(y, bfx, w, bias, Epilogue::kNone); }, "linear");
  expect_invalid([&] { be->linear(gpu, x, w, bias, Epilogue::kNone); }, "linear");
  expect_invalid([&] { be->linear(y, x, Tensor(), bias, Epilogue::kNone); }, "linear");
  expect_invalid([&] { be->linear(f({16}), f({32}), w, bias, Epilogue::kNone); }, "linear");
  expect_invalid([&] { be->linear(x.slice(2, 0, 16), x, w, bias, Epilogue::kNone); }, "linear");  // y overlaps x
  expect_invalid([&] { be->linear(y, x, f({32, 16}).transpose(0, 1), bias, Epilogue::kNone); }, "linear");  // w strided


  Tensor ln = f({2, 7, 32});
  expect_invalid([&] { be->layer_norm_modulate(ln, x, f({2, 32}), Tensor(), 1e-6f); }, "layer_norm_modulate");
  expect_invalid([&] { be->layer_norm_modulate(f({2, 7, 31}), x, Tensor(), Tensor(), 1e-6f); }, "layer_norm_modulate");
  expect_invalid([&] { be->layer_norm_modulate(ln, x, f({2, 31}), f({2, 31}), 1e-6f); }, "layer_norm_modulate");
  expect_invalid([&] { be->layer_norm_modulate(ln, x, f({1, 32}), f({1, 32}), 1e-6f); }, "layer_norm_modulate");
  expect_invalid([&] { be->layer_norm_modulate(f({14, 32}), f({14, 32}), Tensor(), Tensor(), 1e-6f); },
                 "layer_norm_modulate");

  Tensor q = f({2, 7, 3, 16}), rw = f({16}), cs = f({7, 16});
  const char* rn = "rms_norm_rope";
  expect_invalid([&] { be->rms_norm_rope(f({2, 7, 3, 16}), q, f({15}), cs, cs, 1e-6f); }, rn);
  expect_invalid([&] { be->rms_norm_rope(f({2, 7, 3, 16}), q, rw, f({8, 16}), f({8, 16}), 1e-6f); }, rn);
  expect_invalid([&] { be->rms_norm_rope(f({2, 7, 3, 16}), q, rw, cs, Tensor(), 1e-6f); }, rn);
  expect_invalid([&] { be->rms_norm_rope(f({2, 7, 3, 15}), f({2, 7, 3, 15}), f({15}), f({7, 15}), f({7, 15}), 1e-6f); },
                 rn);  // odd head dim with RoPE
  expect_invalid([&] { be->rms_norm_rope(f({2, 7, 48}), f({2, 7, 48}), f({48}), Tensor(), Tensor(), 1e-6f); }, rn);
  expect_invalid([&] { be->rms_norm_rope(q.slice(1, 1, 6), q.slice(1, 0, 6), rw, Tensor(), Tensor(), 1e-6f); },
                 rn);  // y overlaps x shifted by one token

  Tensor k = f({2, 9, 3, 16}), v = f({2, 9, 3, 16}), o = f({2, 7, 3, 16}), l = f({2, 3, 7});
  expect_invalid([&] { be->attention(o, l, q, f({2, 9, 2, 16}), v, 0.25f); }, "attention");
  expect_invalid([&] { be->attention(o, l, q, k, f({2, 8, 3, 16}), 0.25f); }, "attention");
  expect_invalid([&] { be->attention(o, f({2, 7, 3}), q, k, v, 0.25f); }, "attention");
  expect_invalid([&] { be->attention(f({2, 7, 3, 15}), l, q, k, v, 0.25f); }, "attention");
  expect_invalid([&] { be->attention(o, l, f({2, 7, 16, 3}).transpose(2, 3), k, v, 0.25f); }, "attention");
  expect_invalid([&] { be->attention(o, l, f({2, 7, 3, 8}), k, v, 0.25f); }, "attention");
  expect_invalid([&] { be->attention(k, Tensor(), f({2, 9, 3, 16}), k, v, 0.25f); }, "attention");  // out is k

  expect_invalid([&] { be->silu(f({2, 3}), f({3, 2})); }, "silu");
  expect_invalid([&] { be->gelu_tanh(f({2, 3}), f({2, 4})); }, "gelu_tanh");
  expect_invalid([&] { be->add(f({2, 3}), f({2, 3}), f({2, 4})); }, "add");
  expect_invalid([&] { be->gated_add(f({2, 7, 16}), f({2, 7, 16}), f({2, 15})); }, "gated_add");
  expect_invalid([&] { be->gated_add(f({2, 7, 16}), f({2, 6, 16}), f({2, 16})); }, "gated_add");
  expect_invalid([&] { be->copy(f({2, 3}), f({3, 2})); }, "copy");
  expect_invalid([&] { be->fill(Tensor(), 1.0f); }, "fill");
  expect_invalid([&] { be->fill_random(gpu, 1, 1.0f); }, "fill_random");
}

TEST(CpuOpsErrors, BackendIdentity) {
  auto be = create_cpu_backend(3);
  EXPECT_EQ(be->name(), "cpu (3 threads)");
  EXPECT_EQ(be->compute_dtype(), DType::kF32);
  EXPECT_TRUE(be->device().is_cpu());
  EXPECT_GE(create_cpu_backend(0)->name().size(), 5u);
  expect_invalid([&] { create_cpu_backend(-1); }, "create_cpu_backend");
  // upload/download round trip through copy.
  Tensor h = test::random_host({3, 5}, 120);
  Tensor d = be->upload(h, DType::kBF16);
  EXPECT_EQ(d.dtype(), DType::kBF16);
  EXPECT_LE(test::rel_l2(be->download_f32(d), h), 4e-3);
}

// ------------------------------------------------------------------------------------------------- timings

// Not a check: prints what the reference costs on this machine (FLOP/s in parentheses).
TEST(CpuOpsTiming, Print) {
  auto be = create_cpu_backend(0);
  auto time = [&](const char* what, double flops, const std::function<void()>& fn) {
    fn();  // warm up
    double best = 1e30;
    for (int i = 0; i < 3; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      fn();
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    std::printf("[timing] %-44s %9.2f ms  (%.1f GFLOP/s) on %s\n", what, best * 1e3, flops / best * 1e-9,
                be->name().c_str());
  };
  {
    Tensor q = be->empty({1, 512, 2, 128}), k = be->empty({1, 512, 2, 128}), v = be->empty({1, 512, 2, 128});
    be->fill_random(q, 1, 1.0f), be->fill_random(k, 2, 1.0f), be->fill_random(v, 3, 1.0f);
    Tensor o = be->empty({1, 512, 2, 128}), l = be->empty({1, 2, 512});
    time("attention B1 H2 S512 d128 (+lse)", 4.0 * 2 * 512 * 512 * 128, [&] { be->attention(o, l, q, k, v, 0.088f); });
  }
  {
    Tensor q = be->empty({1, 4608, 1, 128}), k = be->empty({1, 4608, 1, 128}), v = be->empty({1, 4608, 1, 128});
    be->fill_random(q, 1, 1.0f), be->fill_random(k, 2, 1.0f), be->fill_random(v, 3, 1.0f);
    Tensor o = be->empty({1, 4608, 1, 128}), l = be->empty({1, 1, 4608});
    time("attention B1 H1 S4608 d128 (+lse)", 4.0 * 4608 * 4608 * 128, [&] { be->attention(o, l, q, k, v, 0.088f); });
  }
  {
    Tensor x = be->empty({1, 512, 3072}), w = be->empty({3072, 3072}), b = be->empty({3072});
    Tensor y = be->empty({1, 512, 3072});
    be->fill_random(x, 4, 1.0f), be->fill_random(w, 5, 0.02f), be->fill_random(b, 6, 0.02f);
    time("linear 512x3072x3072 (+bias)", 2.0 * 512 * 3072 * 3072, [&] { be->linear(y, x, w, b, Epilogue::kNone); });
    time("linear 512x3072x3072 (+bias, gelu)", 2.0 * 512 * 3072 * 3072,
         [&] { be->linear(y, x, w, b, Epilogue::kGeluTanh); });
    Tensor mod = be->empty({1, 6 * 3072});
    be->fill_random(mod, 7, 0.5f);
    time("layer_norm_modulate 512x3072", 8.0 * 512 * 3072,
         [&] { be->layer_norm_modulate(y, x, mod.slice(1, 0, 3072), mod.slice(1, 3072, 3072), 1e-6f); });
  }
}

}  // namespace
}  // namespace paradit
