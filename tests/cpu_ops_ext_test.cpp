// The CPU backend's text-encoder and VAE ops (axpby, mul, quick_gelu, embedding, layer_norm, attention_biased,
// conv2d, group_norm, upsample_nearest2x) against the float64 references in support/reference_ops: random
// inputs, outputs poisoned with NaN, strided views on both sides, odd sizes, and 1, 2 and 3 threads (tiles and
// row splits differ with the thread count). And region timing's host clock.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "paradit/backend/backend.h"
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

// A host tensor of dtype dt holding the rounded values of f32 tensor src.
Tensor converted(const Tensor& src, DType dt) {
  Tensor t = Tensor::empty(src.shape(), dt, cpu_allocator());
  const Tensor s = copy_of(src);
  convert_host(t.data(), dt, s.data(), DType::kF32, size_t(s.numel()));
  return t;
}

class CpuOpsExt : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override { be = create_cpu_backend(GetParam()); }
  std::unique_ptr<Backend> be;
};

INSTANTIATE_TEST_SUITE_P(Threads, CpuOpsExt, ::testing::Values(1, 2, 3),
                         [](const auto& info) { return "t" + std::to_string(info.param); });

// ---------------------------------------------------------------------------------------------- pointwise

TEST_P(CpuOpsExt, QuickGeluAndMul) {
  Tensor xb = test::random_host({2, 15, 90}, 1, 3.0f);
  Tensor x = xb.slice(2, 3, 77);
  Tensor ybuf = test::poisoned_host({2, 15, 80});
  Tensor y = ybuf.slice(2, 2, 77);
  be->quick_gelu(y, x);
  EXPECT_LE(test::rel_l2(y, test::ref::quick_gelu(x)), kTol);
  EXPECT_EQ(count_written(ybuf), y.numel());

  Tensor bb = test::random_host({2, 15, 4, 77}, 2);
  Tensor b = bb.select(2, 1);
  Tensor mbuf = test::poisoned_host({2, 15, 80});
  Tensor m = mbuf.slice(2, 3, 77);
  be->mul(m, x, b);
  EXPECT_LE(test::rel_l2(m, test::ref::mul(x, b)), kTol);
  EXPECT_EQ(count_written(mbuf), m.numel());

  // In place, a long single row (cut across threads), and tails: quick_gelu(−100) = −0, quick_gelu(100) = 100.
  Tensor a = test::random_host({50001}, 3, 4.0f);
  const Tensor want_qg = test::ref::quick_gelu(a);
  be->quick_gelu(a, a);
  EXPECT_LE(test::rel_l2(a, want_qg), kTol);
  Tensor c = test::random_host({7, 9}, 4), d = test::random_host({7, 9}, 5);
  const Tensor want_mul = test::ref::mul(c, d);
  be->mul(c, c, d);
  EXPECT_LE(test::rel_l2(c, want_mul), kTol);
  float vals[4] = {-100.0f, 100.0f, -20.0f, 20.0f};
  Tensor ein = Tensor::borrow(vals, {4}, DType::kF32, Device::cpu());
  Tensor e = test::poisoned_host({4});
  be->quick_gelu(e, ein);
  EXPECT_LE(test::rel_l2(e, test::ref::quick_gelu(ein)), kTol);
  EXPECT_EQ(e.data_as<float>()[0], 0.0f);
}

TEST_P(CpuOpsExt, Axpby) {
  const float alpha = 0.75f, beta = -1.25f;
  Tensor ab = test::random_host({3, 11, 50}, 10), bb = test::random_host({3, 11, 2, 40}, 11);
  Tensor a = ab.slice(2, 5, 40), b = bb.select(2, 1);
  {  // f32, strided on every side
    Tensor ybuf = test::poisoned_host({3, 11, 45});
    Tensor y = ybuf.slice(2, 1, 40);
    be->axpby(y, a, alpha, b, beta);
    EXPECT_LE(test::rel_l2(y, test::ref::axpby(a, alpha, b, beta)), kTol);
    EXPECT_EQ(count_written(ybuf), y.numel());
  }
  {  // f32 latents += bf16 velocity, in place, one long row (several blocks and pieces)
    Tensor lat = test::random_host({1, 40000}, 12);
    Tensor vel = converted(test::random_host({1, 40000}, 13), DType::kBF16);
    const Tensor want = test::ref::axpby(lat, 1.0f, vel, -0.3f);
    be->axpby(lat, lat, 1.0f, vel, -0.3f);
    EXPECT_LE(test::rel_l2(lat, want), kTol);
  }
  {  // bf16 and f16 outputs: the f32 result rounded once
    const Tensor want = test::ref::axpby(a, alpha, b, beta);
    for (DType dt : {DType::kBF16, DType::kF16}) {
      Tensor y = Tensor::empty({3, 11, 40}, dt, cpu_allocator());
      Tensor bh = converted(b, DType::kF16);
      be->axpby(y, a, alpha, bh, beta);
      EXPECT_LE(test::rel_l2(y, test::ref::axpby(a, alpha, bh, beta)), dt == DType::kBF16 ? 4e-3 : 5e-4)
          << dtype_name(dt);
      EXPECT_LE(test::rel_l2(y, want), dt == DType::kBF16 ? 4e-3 : 1e-3) << dtype_name(dt);
    }
  }
}

// ----------------------------------------------------------------------------------------------- embedding

TEST_P(CpuOpsExt, Embedding) {
  const int64_t V = 50, D = 37, B = 2, S = 7;
  Tensor tbuf = test::random_host({V, D + 6}, 20);
  Tensor table = tbuf.slice(1, 4, D);  // row stride D + 6
  std::vector<int32_t> ids = {0, 49, 3, 3, 17, 0, 25, 48, 1, 2, 49, 9, 30, 11};
  Tensor obuf = test::poisoned_host({B, S + 2, D + 3});
  Tensor out = obuf.slice(1, 1, S).slice(2, 2, D);
  be->embedding(out, table, ids);
  EXPECT_EQ(test::max_abs_diff(out, test::ref::embedding(table, ids, B, S)), 0.0);  // a copy: exact
  EXPECT_EQ(count_written(obuf), out.numel());
  // A bad id is reported with its value and position, and nothing is written.
  for (int32_t bad : {-1, int32_t(V)}) {
    std::vector<int32_t> wrong = ids;
    wrong[9] = bad;
    Tensor o2 = test::poisoned_host({B, S, D});
    const std::string msg = expect_invalid([&] { be->embedding(o2, table, wrong); }, "embedding");
    EXPECT_NE(msg.find("id " + std::to_string(bad)), std::string::npos) << msg;
    EXPECT_NE(msg.find("position 9"), std::string::npos) << msg;
    EXPECT_EQ(count_written(o2), 0);
  }
}

// ---------------------------------------------------------------------------------------------- layer_norm

TEST_P(CpuOpsExt, LayerNorm) {
  for (int64_t D : {77, 768}) {
    const int64_t B = 2, S = 13;
    Tensor xb = test::random_host({B, S, D + 5}, 30 + D);
    for (int64_t i = 0; i < xb.numel(); ++i) xb.data_as<float>()[i] += 3.0f;  // a mean far from zero
    Tensor x = xb.slice(2, 2, D);
    Tensor pbuf = test::random_host({3, D}, 31 + D, 0.5f);
    Tensor weight = pbuf.select(0, 0), bias = pbuf.select(0, 2);
    Tensor ybuf = test::poisoned_host({B, S, 2 * D});
    Tensor y = ybuf.slice(2, D, D);
    be->layer_norm(y, x, weight, bias, 1e-5f);
    EXPECT_LE(test::rel_l2(y, test::ref::layer_norm(x, weight, bias, 1e-5f)), kTol) << D;
    EXPECT_EQ(count_written(ybuf), y.numel());
    Tensor y2 = test::poisoned_host({B, S, D});
    be->layer_norm(y2, x, weight, Tensor(), 1e-5f);
    EXPECT_LE(test::rel_l2(y2, test::ref::layer_norm(x, weight, Tensor(), 1e-5f)), kTol) << D;
  }
  // In place, rank 2.
  Tensor x = test::random_host({9, 33}, 39);
  Tensor w = test::random_host({33}, 40), b = test::random_host({33}, 41);
  const Tensor want = test::ref::layer_norm(x, w, b, 1e-6f);
  be->layer_norm(x, x, w, b, 1e-6f);
  EXPECT_LE(test::rel_l2(x, want), kTol);
}

// --------------------------------------------------------------------------------------- attention_biased

struct BiasedCase {
  int64_t B, Sq, Skv, H, d;
};

TEST_P(CpuOpsExt, AttentionBiased) {
  // CLIP (77 tokens, causal), T5-like (bias), a short sequence, one spanning two query blocks, Sq != Skv.
  const std::vector<BiasedCase> cases = {
      {2, 77, 77, 3, 16}, {2, 13, 13, 2, 64}, {1, 130, 130, 2, 16}, {2, 13, 77, 2, 16}, {1, 77, 13, 1, 32}};
  for (const auto& c : cases) {
    const bool self = c.Sq == c.Skv;
    Tensor qbuf = test::random_host({c.B, c.Sq, 3, c.H, c.d}, 50 + c.Sq);
    Tensor kvbuf = self ? qbuf : test::random_host({c.B, c.Skv, 3, c.H, c.d}, 51 + c.Skv);
    Tensor q = qbuf.select(2, 0), k = kvbuf.select(2, 1), v = kvbuf.select(2, 2);
    Tensor bbuf = test::random_host({c.H, c.Sq, c.Skv + 5}, 52 + c.Sq, 2.0f);
    Tensor bias = bbuf.slice(2, 3, c.Skv);  // row stride Skv + 5
    const float scale = 1.0f / std::sqrt(float(c.d));
    for (int mode = 0; mode < 4; ++mode) {
      const bool with_bias = mode & 1, causal = mode & 2;
      SCOPED_TRACE(testing::Message() << "B" << c.B << " Sq" << c.Sq << " Skv" << c.Skv << " H" << c.H << " d"
                                      << c.d << (with_bias ? " bias" : "") << (causal ? " causal" : ""));
      const Tensor bb = with_bias ? bias : Tensor();
      Tensor obuf = test::poisoned_host({c.B, c.Sq, c.H, c.d + 8});
      Tensor out = obuf.slice(3, 4, c.d);
      be->attention_biased(out, q, k, v, scale, bb, causal);
      const Tensor want = test::ref::attention_biased(q, k, v, scale, bb, causal);
      EXPECT_LE(test::rel_l2(out, want), kTol);
      EXPECT_EQ(count_written(obuf), out.numel());
      if (mode == 0) EXPECT_LE(test::rel_l2(out, test::ref::attention(q, k, v, scale)), kTol);
    }
  }
}

TEST_P(CpuOpsExt, AttentionBiasedMaskingBias) {
  // A padding mask as an additive bias: −inf on the last keys of every query, and on every key of query 4,
  // which then sees nothing and gets 0. Logits of magnitude ~100 need the max subtraction.
  const int64_t B = 2, S = 13, H = 2, d = 16;
  Tensor q = test::random_host({B, S, H, d}, 60, 3.0f), k = test::random_host({B, S, H, d}, 61, 3.0f);
  Tensor v = test::random_host({B, S, H, d}, 62);
  Tensor bias = test::random_host({H, S, S}, 63);
  for (int64_t h = 0; h < H; ++h)
    for (int64_t i = 0; i < S; ++i)
      for (int64_t j = 0; j < S; ++j)
        if (j >= 10 || i == 4) bias.data_as<float>()[(h * S + i) * S + j] = -std::numeric_limits<float>::infinity();
  for (bool causal : {false, true}) {
    Tensor out = test::poisoned_host({B, S, H, d});
    be->attention_biased(out, q, k, v, 1.0f, bias, causal);
    EXPECT_LE(test::rel_l2(out, test::ref::attention_biased(q, k, v, 1.0f, bias, causal)), kTol) << causal;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t c = 0; c < d; ++c) ASSERT_EQ(out.data_as<float>()[((b * S + 4) * H + h) * d + c], 0.0f);
  }
}

// ------------------------------------------------------------------------------------------------- conv2d

struct ConvCase {
  const char* what;
  int64_t B, H, W, Cin, Cout, kh, kw;
  int pad;
};

TEST_P(CpuOpsExt, Conv2d) {
  const std::vector<ConvCase> cases = {
      {"3x3 pad 1", 2, 5, 7, 3, 5, 3, 3, 1},
      {"1x1 pad 0", 2, 5, 7, 3, 5, 1, 1, 0},
      {"3x3 pad 0", 2, 5, 7, 3, 5, 3, 3, 0},
      {"1x3 pad 1", 1, 4, 6, 4, 3, 1, 3, 1},
      {"1x1 pad 1", 1, 3, 3, 2, 2, 1, 1, 1},
      {"3x3 pad 1, several tiles", 1, 21, 19, 64, 32, 3, 3, 1},
      {"1x1 pad 0, several tiles", 2, 23, 17, 96, 40, 1, 1, 0},
      {"3x3 pad 1, 256 -> 8", 1, 9, 9, 256, 8, 3, 3, 1},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    const int64_t Ho = c.H + 2 * c.pad - c.kh + 1, Wo = c.W + 2 * c.pad - c.kw + 1;
    // x a channel slice of a wider buffer (pixel stride Cin + 3), y one of a wider poisoned buffer.
    Tensor xbuf = test::random_host({c.B, c.H, c.W, c.Cin + 3}, 70 + c.Cin);
    Tensor x = xbuf.slice(3, 1, c.Cin);
    const float wstd = 1.0f / std::sqrt(float(c.Cin * c.kh * c.kw));
    Tensor w = test::random_host({c.Cout, c.kh, c.kw, c.Cin}, 71 + c.Cout, wstd);
    Tensor bias = test::random_host({c.Cout}, 72);
    Tensor ybuf = test::poisoned_host({c.B, Ho, Wo, c.Cout + 4});
    Tensor y = ybuf.slice(3, 2, c.Cout);
    be->conv2d(y, x, w, bias, c.pad);
    EXPECT_LE(test::rel_l2(y, test::ref::conv2d(x, w, bias, c.pad)), kTol);
    EXPECT_EQ(count_written(ybuf), y.numel());
    // Without bias, from a contiguous x into a contiguous y.
    Tensor xc = copy_of(x);
    Tensor y2 = test::poisoned_host({c.B, Ho, Wo, c.Cout});
    be->conv2d(y2, xc, w, Tensor(), c.pad);
    EXPECT_LE(test::rel_l2(y2, test::ref::conv2d(xc, w, Tensor(), c.pad)), kTol);
  }
}

TEST_P(CpuOpsExt, Conv2dUnevenPixelStrides) {
  // x a crop of a bigger image: rows are not W pixels apart, so even a 1×1 convolution gathers its pixels.
  Tensor xbuf = test::random_host({2, 8, 11, 6}, 80);
  Tensor x = xbuf.slice(1, 2, 5).slice(2, 3, 7);  // [2, 5, 7, 6]
  for (int64_t k : {1, 3}) {
    Tensor w = test::random_host({5, k, k, 6}, 81 + k, 0.3f);
    Tensor bias = test::random_host({5}, 83);
    const int pad = int(k / 2);
    Tensor ybuf = test::poisoned_host({2, 9, 9, 5});
    Tensor y = ybuf.slice(1, 1, 5).slice(2, 2, 7);  // y cropped the same way
    be->conv2d(y, x, w, bias, pad);
    EXPECT_LE(test::rel_l2(y, test::ref::conv2d(x, w, bias, pad)), kTol) << k;
    EXPECT_EQ(count_written(ybuf), y.numel()) << k;
  }
}

// --------------------------------------------------------------------------------------------- group_norm

struct GroupNormCase {
  int64_t B, H, W, C;
  int groups;
};

TEST_P(CpuOpsExt, GroupNorm) {
  // C = 64 with 32 groups (the VAE's layout, at a small width) over several statistics chunks; C = 6, 3 groups.
  const std::vector<GroupNormCase> cases = {
      {2, 5, 7, 64, 32}, {1, 23, 29, 64, 32}, {2, 5, 7, 6, 3}, {1, 60, 70, 6, 3}, {2, 3, 4, 10, 1}};
  for (const auto& c : cases) {
    Tensor xbuf = test::random_host({c.B, c.H, c.W, c.C + 4}, 90 + c.C + c.H);
    for (int64_t i = 0; i < xbuf.numel(); ++i) xbuf.data_as<float>()[i] = 2.0f * xbuf.data_as<float>()[i] + 5.0f;
    Tensor x = xbuf.slice(3, 1, c.C);
    Tensor pbuf = test::random_host({2, c.C}, 91 + c.C, 0.5f);
    Tensor weight = pbuf.select(0, 0), bias = pbuf.select(0, 1);
    for (bool silu : {false, true}) {
      SCOPED_TRACE(testing::Message() << "B" << c.B << " H" << c.H << " W" << c.W << " C" << c.C << " groups"
                                      << c.groups << (silu ? " silu" : ""));
      Tensor ybuf = test::poisoned_host({c.B, c.H, c.W, c.C + 3});
      Tensor y = ybuf.slice(3, 3, c.C);
      be->group_norm(y, x, weight, bias, c.groups, 1e-6f, silu);
      const Tensor want = test::ref::group_norm(x, weight, bias, c.groups, 1e-6f, silu);
      EXPECT_LE(test::rel_l2(y, want), kTol);
      EXPECT_EQ(count_written(ybuf), y.numel());
      // In place on a contiguous copy.
      Tensor z = copy_of(x);
      be->group_norm(z, z, weight, bias, c.groups, 1e-6f, silu);
      EXPECT_LE(test::rel_l2(z, want), kTol);
    }
  }
}

TEST(CpuOpsExtGroupNorm, SameResultForEveryThreadCount) {
  // Statistics chunks do not depend on the thread count, so neither do the bits of the result.
  Tensor x = test::random_host({2, 37, 41, 64}, 95);
  Tensor w = test::random_host({64}, 96), b = test::random_host({64}, 97);
  Tensor y1 = test::poisoned_host(x.shape()), y3 = test::poisoned_host(x.shape());
  create_cpu_backend(1)->group_norm(y1, x, w, b, 32, 1e-6f, true);
  create_cpu_backend(3)->group_norm(y3, x, w, b, 32, 1e-6f, true);
  EXPECT_EQ(test::max_abs_diff(y1, y3), 0.0);
}

// ------------------------------------------------------------------------------------------------ upsample

TEST_P(CpuOpsExt, UpsampleNearest2x) {
  Tensor xbuf = test::random_host({2, 3, 5, 9}, 100);
  Tensor x = xbuf.slice(3, 1, 7);
  Tensor ybuf = test::poisoned_host({2, 6, 10, 10});
  Tensor y = ybuf.slice(3, 3, 7);
  be->upsample_nearest2x(y, x);
  EXPECT_EQ(test::max_abs_diff(y, test::ref::upsample_nearest2x(x)), 0.0);  // a copy: exact
  EXPECT_EQ(count_written(ybuf), y.numel());
  Tensor big = test::random_host({1, 40, 33, 16}, 101);
  Tensor yb = test::poisoned_host({1, 80, 66, 16});
  be->upsample_nearest2x(yb, big);
  EXPECT_EQ(test::max_abs_diff(yb, test::ref::upsample_nearest2x(big)), 0.0);
}

// ---------------------------------------------------------------------------------------------- bad input

TEST(CpuOpsExtErrors, BadArgumentsThrowInvalidArgument) {
  auto be = create_cpu_backend(2);
  auto f = [](const Shape& s) { return test::random_host(s, 7); };
  float dummy[4];
  Tensor gpu = Tensor::borrow(dummy, {2, 3}, DType::kF32, Device::cuda(0));  // never dereferenced
  Tensor f8 = Tensor::empty({2, 3}, DType::kF8E4M3, cpu_allocator());
  Tensor bf = Tensor::empty({2, 3}, DType::kBF16, cpu_allocator());

  Tensor a = f({2, 3});
  expect_invalid([&] { be->axpby(f({2, 3}), a, 1, f({3, 2}), 1); }, "axpby");
  expect_invalid([&] { be->axpby(f({2, 4}), a, 1, a, 1); }, "axpby");
  expect_invalid([&] { be->axpby(f8, a, 1, a, 1); }, "axpby");
  expect_invalid([&] { be->axpby(a, f8, 1, a, 1); }, "axpby");
  expect_invalid([&] { be->axpby(gpu, a, 1, a, 1); }, "axpby");
  expect_invalid([&] { be->axpby(a, a, 1, Tensor(), 1); }, "axpby");
  expect_invalid([&] { be->axpby(f({3, 2}).transpose(0, 1), a, 1, a, 1); }, "axpby");  // last dim strided
  Tensor wide = f({2, 4});
  expect_invalid([&] { be->axpby(wide.slice(1, 1, 3), wide.slice(1, 0, 3), 1, a, 1); }, "axpby");  // shifted alias
  Tensor alias = Tensor::borrow(a.data(), {2, 6}, DType::kBF16, Device::cpu());
  expect_invalid([&] { be->axpby(alias.slice(1, 0, 3), a, 1, a, 1); }, "axpby");  // same bytes, other dtype
  expect_invalid([&] { be->mul(f({2, 3}), a, f({2, 4})); }, "mul");
  expect_invalid([&] { be->mul(bf, a, a); }, "mul");
  expect_invalid([&] { be->quick_gelu(f({3, 2}), a); }, "quick_gelu");
  expect_invalid([&] { be->quick_gelu(gpu, a); }, "quick_gelu");

  Tensor table = f({10, 8});
  const std::vector<int32_t> ids(6, 1);
  expect_invalid([&] { be->embedding(f({2, 3, 8}), table, std::vector<int32_t>(5, 1)); }, "embedding");
  expect_invalid([&] { be->embedding(f({2, 3, 7}), table, ids); }, "embedding");
  expect_invalid([&] { be->embedding(f({6, 8}), table, ids); }, "embedding");
  expect_invalid([&] { be->embedding(f({2, 3, 8}), f({10, 8, 1}), ids); }, "embedding");
  expect_invalid([&] { be->embedding(table.slice(0, 0, 6).unflatten(0, 2, 3), table, ids); }, "embedding");

  Tensor x = f({2, 5, 16}), w16 = f({16});
  expect_invalid([&] { be->layer_norm(f({2, 5, 16}), x, f({15}), w16, 1e-5f); }, "layer_norm");
  expect_invalid([&] { be->layer_norm(f({2, 5, 16}), x, w16, f({17}), 1e-5f); }, "layer_norm");
  expect_invalid([&] { be->layer_norm(f({2, 5, 16}), x, Tensor(), w16, 1e-5f); }, "layer_norm");
  expect_invalid([&] { be->layer_norm(f({2, 4, 16}), x, w16, w16, 1e-5f); }, "layer_norm");
  expect_invalid([&] { be->layer_norm(f({2, 5, 16}), x, w16, w16, -1.0f); }, "layer_norm");
  expect_invalid([&] { be->layer_norm(x.slice(1, 1, 4), x.slice(1, 0, 4), w16, w16, 1e-5f); }, "layer_norm");

  const char* ab = "attention_biased";
  Tensor q = f({2, 7, 3, 16}), k = f({2, 9, 3, 16}), v = f({2, 9, 3, 16}), o = f({2, 7, 3, 16});
  expect_invalid([&] { be->attention_biased(o, q, k, v, 0.25f, f({3, 7, 8}), false); }, ab);
  expect_invalid([&] { be->attention_biased(o, q, k, v, 0.25f, f({2, 3, 7, 9}), false); }, ab);
  expect_invalid([&] { be->attention_biased(o, q, k, v, 0.25f, f({3, 9, 7}), true); }, ab);
  expect_invalid([&] { be->attention_biased(o, q, k, v, 0.25f, f({9, 7, 3}).transpose(0, 2), true); }, ab);
  expect_invalid([&] { be->attention_biased(o, q, f({2, 9, 2, 16}), v, 0.25f, Tensor(), true); }, ab);
  expect_invalid([&] { be->attention_biased(o, q, k, f({2, 8, 3, 16}), 0.25f, Tensor(), true); }, ab);
  expect_invalid([&] { be->attention_biased(f({2, 7, 3, 15}), q, k, v, 0.25f, Tensor(), false); }, ab);
  expect_invalid([&] { be->attention_biased(q, q, k, v, 0.25f, Tensor(), false); }, ab);  // out is q
  Tensor ob = f({3, 7, 9 * 16});
  Tensor o_over = Tensor::borrow(ob.data(), {2, 7, 3, 16}, DType::kF32, Device::cpu());
  expect_invalid([&] { be->attention_biased(o_over, q, k, v, 0.25f, ob.slice(2, 0, 9), false); }, ab);  // out on bias

  Tensor cx = f({2, 5, 7, 3}), cw = f({5, 3, 3, 3}), cy = f({2, 5, 7, 5});
  expect_invalid([&] { be->conv2d(cy, cx, cw, f({5}), 0); }, "conv2d");  // y is 5×7, pad 0 gives 3×5
  expect_invalid([&] { be->conv2d(cy, cx, f({5, 3, 3, 4}), f({5}), 1); }, "conv2d");
  expect_invalid([&] { be->conv2d(cy, cx, cw, f({4}), 1); }, "conv2d");
  expect_invalid([&] { be->conv2d(cy, cx, cw, f({5}), -1); }, "conv2d");
  expect_invalid([&] { be->conv2d(cy, f({2, 35, 3}), cw, f({5}), 1); }, "conv2d");
  expect_invalid([&] { be->conv2d(cy, cx, f({5, 27}), f({5}), 1); }, "conv2d");
  expect_invalid([&] { be->conv2d(cy, cx, f({3, 3, 3, 5}).transpose(0, 3), f({5}), 1); }, "conv2d");  // w strided
  expect_invalid([&] { be->conv2d(f({2, 1, 1, 5}), f({2, 1, 1, 3}), cw, f({5}), 0); }, "conv2d");  // kernel > input
  expect_invalid([&] { be->conv2d(cy, cx, Tensor(), f({5}), 1); }, "conv2d");
  Tensor same = f({2, 5, 7, 5});
  expect_invalid([&] { be->conv2d(same, same.slice(3, 0, 3), cw, f({5}), 1); }, "conv2d");  // y overlaps x

  Tensor gx = f({2, 4, 5, 6}), gw = f({6});
  expect_invalid([&] { be->group_norm(f({2, 4, 5, 6}), gx, gw, gw, 4, 1e-6f, false); }, "group_norm");
  expect_invalid([&] { be->group_norm(f({2, 4, 5, 6}), gx, gw, gw, 0, 1e-6f, false); }, "group_norm");
  expect_invalid([&] { be->group_norm(f({2, 4, 5, 6}), gx, f({5}), gw, 3, 1e-6f, false); }, "group_norm");
  expect_invalid([&] { be->group_norm(f({2, 4, 5, 6}), gx, gw, Tensor(), 3, 1e-6f, false); }, "group_norm");
  expect_invalid([&] { be->group_norm(f({2, 4, 6, 6}), gx, gw, gw, 3, 1e-6f, true); }, "group_norm");
  expect_invalid([&] { be->group_norm(f({8, 5, 6}), f({8, 5, 6}), gw, gw, 3, 1e-6f, true); }, "group_norm");
  expect_invalid([&] { be->group_norm(gx.slice(1, 1, 3), gx.slice(1, 0, 3), gw, gw, 3, 1e-6f, true); },
                 "group_norm");  // shifted alias

  expect_invalid([&] { be->upsample_nearest2x(f({2, 6, 10, 3}), f({2, 3, 5, 4})); }, "upsample_nearest2x");
  expect_invalid([&] { be->upsample_nearest2x(f({2, 6, 9, 3}), f({2, 3, 5, 3})); }, "upsample_nearest2x");
  expect_invalid([&] { be->upsample_nearest2x(f({6, 10, 3}), f({3, 5, 3})); }, "upsample_nearest2x");
  Tensor up = f({1, 4, 4, 3});
  expect_invalid([&] { be->upsample_nearest2x(up, up.slice(1, 0, 2).slice(2, 0, 2)); }, "upsample_nearest2x");
}

// ------------------------------------------------------------------------------------------------- timings

// Not a check: prints what the reference costs on this machine (FLOP/s in parentheses).
TEST(CpuOpsExtTiming, Print) {
  auto be = create_cpu_backend(0);
  auto time = [&](const char* what, double flops, const std::function<void()>& fn) {
    fn();  // warm up
    double best = 1e30;
    for (int i = 0; i < 3; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      fn();
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    std::printf("[timing] %-48s %9.2f ms  (%.1f GFLOP/s) on %s\n", what, best * 1e3, flops / best * 1e-9,
                be->name().c_str());
  };
  {
    Tensor x = be->empty({1, 64, 64, 512}), y = be->empty({1, 64, 64, 512});
    Tensor w3 = be->empty({512, 3, 3, 512}), w1 = be->empty({512, 1, 1, 512}), b = be->empty({512});
    be->fill_random(x, 1, 1.0f), be->fill_random(w3, 2, 0.02f), be->fill_random(w1, 3, 0.05f);
    be->fill_random(b, 4, 0.02f);
    time("conv2d 3x3 512->512 64x64 (+bias)", 2.0 * 64 * 64 * 512 * 512 * 9, [&] { be->conv2d(y, x, w3, b, 1); });
    time("conv2d 1x1 512->512 64x64 (+bias)", 2.0 * 64 * 64 * 512 * 512, [&] { be->conv2d(y, x, w1, b, 0); });
    time("group_norm 32 groups 64x64x512 (+silu)", 10.0 * 64 * 64 * 512,
         [&] { be->group_norm(y, x, b, b, 32, 1e-6f, true); });
  }
  {
    Tensor x = be->empty({1, 128, 128, 512}), y = be->empty({1, 256, 256, 512});
    be->fill_random(x, 5, 1.0f);
    time("upsample_nearest2x 128x128x512", 0, [&] { be->upsample_nearest2x(y, x); });
  }
  {
    Tensor q = be->empty({1, 77, 12, 64}), k = be->empty({1, 77, 12, 64}), v = be->empty({1, 77, 12, 64});
    be->fill_random(q, 6, 1.0f), be->fill_random(k, 7, 1.0f), be->fill_random(v, 8, 1.0f);
    Tensor o = be->empty({1, 77, 12, 64});
    time("attention_biased CLIP B1 S77 H12 d64 causal", 4.0 * 77 * 77 * 12 * 64,
         [&] { be->attention_biased(o, q, k, v, 0.125f, Tensor(), true); });
  }
}

// Region timing on the host clock (the CPU backend's ops are synchronous): totals per name in order of first
// appearance, counts, nothing while off, afresh after a take.
TEST(RegionTiming, HostClockSumsRegionsByName) {
  auto be = create_cpu_backend(1);
  be->mark_region("off");
  EXPECT_TRUE(be->take_region_times().empty());
  be->set_region_timing(true);
  const auto wait_ms = [](int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); };
  be->mark_region("a");
  wait_ms(20);
  be->mark_region("b");
  wait_ms(5);
  be->mark_region("a");
  wait_ms(10);
  const std::vector<RegionTime> t = be->take_region_times();
  ASSERT_EQ(t.size(), 2u);
  EXPECT_EQ(t[0].name, "a");
  EXPECT_EQ(t[0].count, 2);
  EXPECT_GE(t[0].ms, 30.0);
  EXPECT_EQ(t[1].name, "b");
  EXPECT_EQ(t[1].count, 1);
  EXPECT_GE(t[1].ms, 5.0);
  EXPECT_LT(t[1].ms, t[0].ms);
  EXPECT_TRUE(be->take_region_times().empty());
  be->set_region_timing(false);
  be->mark_region("c");
  EXPECT_TRUE(be->take_region_times().empty());
}

}  // namespace
}  // namespace paradit
