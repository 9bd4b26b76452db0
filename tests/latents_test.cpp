// Latents: packing against diffusers' _pack_latents, noise pinned to the fixture's independent Python
// implementation and checked statistically, and every way an --init-latents file can be wrong.
#include "paradit/pipeline/latents.h"

#include <unistd.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "paradit/core/allocator.h"
#include "paradit/core/status.h"
#include "paradit/io/safetensors.h"
#include "scheduler_fixture.h"
#include "test_util.h"

namespace paradit {
namespace {

using test::expect_error;

namespace fs = std::filesystem;
using nlohmann::json;

Tensor from_hex(const std::string& hex, const Shape& shape) {
  Tensor t = Tensor::empty(shape, DType::kF32, cpu_allocator());
  std::istringstream is(hex);
  std::string word;
  int64_t i = 0;
  while (is >> word) {
    if (i >= t.numel()) throw std::runtime_error("too many values for " + shape_str(shape));
    t.data_as<float>()[i++] = std::bit_cast<float>(uint32_t(std::stoul(word, nullptr, 16)));
  }
  if (i != t.numel()) throw std::runtime_error("too few values for " + shape_str(shape));
  return t;
}

bool bit_equal(const Tensor& a, const Tensor& b) {
  return a.dtype() == DType::kF32 && b.dtype() == DType::kF32 && a.shape() == b.shape() && a.is_contiguous() &&
         b.is_contiguous() && std::memcmp(a.data(), b.data(), a.nbytes()) == 0;
}

TEST(Latents, PackMatchesDiffusers) {
  const json& p = test::scheduler_fixture()["pack"];
  const Tensor u = from_hex(p["unpacked"], p["unpacked_shape"].get<Shape>());
  const Tensor packed = from_hex(p["packed"], p["packed_shape"].get<Shape>());
  EXPECT_TRUE(bit_equal(pack_latents(u), packed));
  EXPECT_TRUE(bit_equal(unpack_latents(packed, u.size(2), u.size(3)), u));
  const Tensor ids = from_hex(p["image_ids"], p["image_ids_shape"].get<Shape>());
  EXPECT_TRUE(bit_equal(image_ids(2, 3), ids));
}

TEST(Latents, PackIndexingAndRoundTrip) {
  const Tensor u = test::random_host({2, 16, 6, 10}, 7);
  const Tensor p = pack_latents(u);
  ASSERT_EQ(p.shape(), (Shape{2, 15, 64}));
  // packed[b, r·w + q, c·4 + dy·2 + dx] = u[b, c, 2r + dy, 2q + dx]
  const float* pu = u.data_as<float>();
  const float* pp = p.data_as<float>();
  for (int64_t b : {0, 1})
    for (int64_t c : {0, 5, 15})
      for (int64_t y = 0; y < 6; ++y)
        for (int64_t x = 0; x < 10; ++x)
          EXPECT_EQ(pp[(b * 15 + (y / 2) * 5 + x / 2) * 64 + c * 4 + (y % 2) * 2 + x % 2],
                    pu[((b * 16 + c) * 6 + y) * 10 + x]);
  EXPECT_TRUE(bit_equal(unpack_latents(p, 6, 10), u));
  // Strided input: a transposed view packs as its logical values.
  const Tensor t = test::random_host({1, 16, 8, 4}, 9);
  const Tensor tv = t.transpose(2, 3);  // [1, 16, 4, 8] view
  const Tensor dense = test::to_contiguous_f32(tv);
  EXPECT_TRUE(bit_equal(pack_latents(tv), pack_latents(dense)));
  EXPECT_THROW(pack_latents(test::random_host({1, 16, 5, 4}, 1)), Error);
  EXPECT_THROW(unpack_latents(p, 6, 12), Error);
}

TEST(Latents, Shapes) {
  EXPECT_EQ(flux_unpacked_latent_shape(1, 1024, 1024), (Shape{1, 16, 128, 128}));
  EXPECT_EQ(flux_packed_latent_shape(2, 768, 1024), (Shape{2, 48 * 64, 64}));  // height 768, width 1024
  EXPECT_EQ(flux_unpacked_latent_shape(1, 1000, 1000), (Shape{1, 16, 124, 124}));  // floored like the pipeline
  EXPECT_THROW(flux_packed_latent_shape(1, 8, 1024), Error);
  EXPECT_THROW(flux_packed_latent_shape(0, 1024, 1024), Error);
  const Tensor ids = image_ids(64, 48);
  EXPECT_EQ(ids.shape(), (Shape{64 * 48, 3}));
  EXPECT_EQ(ids.data_as<float>()[(5 * 48 + 7) * 3 + 1], 5.0f);
  EXPECT_EQ(ids.data_as<float>()[(5 * 48 + 7) * 3 + 2], 7.0f);
}

TEST(Noise, MatchesTheIndependentReference) {
  for (const json& r : test::scheduler_fixture()["noise"]) {
    const uint64_t seed = std::stoull(r["seed"].get<std::string>());
    const uint64_t b = r["batch_index"];
    const auto idx = r["indices"].get<std::vector<uint64_t>>();
    const Tensor want = from_hex(r["values"], {int64_t(idx.size())});
    for (size_t k = 0; k < idx.size(); ++k)
      EXPECT_EQ(std::bit_cast<uint32_t>(gaussian_noise_value(seed, b, idx[k])),
                std::bit_cast<uint32_t>(want.data_as<float>()[k]))
          << "seed " << seed << " image " << b << " element " << idx[k];
  }
}

TEST(Noise, DeterministicAndIndependentOfBatchAndSharding) {
  const Shape one{16, 32, 24};
  const Tensor a = gaussian_noise(42, 1, one), b = gaussian_noise(42, 1, one);
  EXPECT_TRUE(bit_equal(a, b));
  EXPECT_FALSE(bit_equal(a, gaussian_noise(43, 1, one)));
  EXPECT_FALSE(bit_equal(a, gaussian_noise(42, 0, one)));
  // Any element alone (a shard of a device) equals the full draw.
  for (int64_t i : {int64_t(0), int64_t(1), int64_t(777), a.numel() - 1})
    EXPECT_EQ(gaussian_noise_value(42, 1, uint64_t(i)), a.data_as<float>()[i]);
  // Image b of a batch is the same whatever the batch size, and is drawn unpacked then packed.
  const Tensor batch3 = flux_initial_noise(5, 3, 512, 384);
  ASSERT_EQ(batch3.shape(), flux_packed_latent_shape(3, 512, 384));
  const Tensor img2 = pack_latents(gaussian_noise(5, 2, {1, 16, 64, 48}));
  EXPECT_EQ(std::memcmp(batch3.data_as<float>() + 2 * img2.numel(), img2.data(), img2.nbytes()), 0);
  EXPECT_TRUE(bit_equal(flux_initial_noise(5, 1, 512, 384), batch3.slice(0, 0, 1)));
}

TEST(Noise, IsStandardNormal) {
  const Tensor t = gaussian_noise(1234, 0, {1 << 21});
  const float* p = t.data_as<float>();
  const int64_t n = t.numel();
  double s = 0, s2 = 0, s4 = 0, lag = 0, both = 0;
  int64_t beyond2 = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double x = p[i];
    ASSERT_TRUE(std::isfinite(x));
    s += x;
    s2 += x * x;
    s4 += x * x * x * x;
    beyond2 += std::fabs(x) > 2.0;
    if (i + 1 < n) lag += x * p[i + 1];
    if (i % 2 == 0) both += x * p[i + 1];  // the two halves of one Box–Muller pair
  }
  const double mean = s / n, var = s2 / n - mean * mean;
  const double se = 1.0 / std::sqrt(double(n));  // standard error of a mean of unit-variance terms
  EXPECT_LT(std::fabs(mean), 5 * se);
  EXPECT_LT(std::fabs(std::sqrt(var) - 1.0), 5 * se);       // sd of the sample sd ≈ 1/√(2n)
  EXPECT_LT(std::fabs(s4 / n - 3.0), 5 * std::sqrt(96.0 / n));  // kurtosis 3; var of x⁴ is 96
  EXPECT_LT(std::fabs(lag / (n - 1)), 5 * se);
  EXPECT_LT(std::fabs(both / (n / 2)), 5 * std::sqrt(2.0) * se);
  EXPECT_NEAR(double(beyond2) / n, 0.0455003, 5 * std::sqrt(0.0455 * 0.9545 / n));
  // Two images of one seed are uncorrelated.
  const Tensor u = gaussian_noise(1234, 1, {1 << 21});
  double cross = 0;
  for (int64_t i = 0; i < n; ++i) cross += double(p[i]) * u.data_as<float>()[i];
  EXPECT_LT(std::fabs(cross / n), 5 * se);
}

class InitLatents : public test::ScratchDirTest {
 protected:
};

TEST_F(InitLatents, ReadsPackedAndUnpacked) {
  // 2 images of 96 wide × 64 high: h = 4, w = 6.
  const Tensor u = test::random_host({2, 16, 8, 12}, 3);
  const Tensor p = pack_latents(u);
  write_safetensors(path("u.safetensors"), {{"latents", u}});
  write_safetensors(path("p.safetensors"), {{"latents", p}, {"other", test::random_host({3}, 1)}});
  EXPECT_TRUE(bit_equal(load_init_latents(path("u.safetensors"), 2, 64, 96), p));
  EXPECT_TRUE(bit_equal(load_init_latents(path("p.safetensors"), 2, 64, 96), p));
  // bf16 latents (what a bf16 pipeline saves) are widened exactly.
  Tensor ub = Tensor::empty(u.shape(), DType::kBF16, cpu_allocator());
  convert_host(ub.data(), DType::kBF16, u.data(), DType::kF32, size_t(u.numel()));
  write_safetensors(path("b.safetensors"), {{"latents", ub}});
  const Tensor got = load_init_latents(path("b.safetensors"), 2, 64, 96);
  Tensor want = Tensor::empty(u.shape(), DType::kF32, cpu_allocator());
  convert_host(want.data(), DType::kF32, ub.data(), DType::kBF16, size_t(u.numel()));
  EXPECT_TRUE(bit_equal(got, pack_latents(want)));
}

TEST_F(InitLatents, ExplainsWhatIsWrong) {
  const std::string missing = path("missing.safetensors");
  expect_error([&] { load_init_latents(missing, 1, 64, 96); }, StatusCode::kNotFound, {missing});

  write_safetensors(path("noname.safetensors"), {{"noise", test::random_host({1, 24, 64}, 1)}});
  expect_error([&] { load_init_latents(path("noname.safetensors"), 1, 64, 96); }, StatusCode::kNotFound,
               {path("noname.safetensors"), "'latents'", "noise"});

  write_safetensors(path("rank2.safetensors"), {{"latents", test::random_host({24, 64}, 1)}});
  expect_error([&] { load_init_latents(path("rank2.safetensors"), 1, 64, 96); }, StatusCode::kInvalidArgument,
               {path("rank2.safetensors"), "[24, 64]", "[1, 16, 8, 12]", "[1, 24, 64]"});

  write_safetensors(path("batch.safetensors"), {{"latents", test::random_host({2, 24, 64}, 1)}});
  expect_error([&] { load_init_latents(path("batch.safetensors"), 1, 64, 96); }, StatusCode::kInvalidArgument,
               {path("batch.safetensors"), "[2, 24, 64]", "[1, 24, 64]", "batch"});

  // Right token count for 96x64, but the request is 64x96 (swapped): unpacked [1,16,12,8] vs [1,16,8,12].
  write_safetensors(path("size.safetensors"), {{"latents", test::random_host({1, 16, 8, 12}, 1)}});
  expect_error([&] { load_init_latents(path("size.safetensors"), 1, 96, 64); }, StatusCode::kInvalidArgument,
               {path("size.safetensors"), "[1, 16, 8, 12]", "[1, 16, 12, 8]", "64x96"});

  write_safetensors(path("chan.safetensors"), {{"latents", test::random_host({1, 24, 16}, 1)}});
  expect_error([&] { load_init_latents(path("chan.safetensors"), 1, 64, 96); }, StatusCode::kInvalidArgument,
               {path("chan.safetensors"), "[1, 24, 16]", "[1, 24, 64]"});

  Tensor nan = test::random_host({1, 24, 64}, 1);
  nan.data_as<float>()[100] = std::nanf("");
  write_safetensors(path("nan.safetensors"), {{"latents", nan}});
  expect_error([&] { load_init_latents(path("nan.safetensors"), 1, 64, 96); }, StatusCode::kInvalidArgument,
               {path("nan.safetensors"), "non-finite", "100"});

  // F64 (what numpy saves by default) is named, with the fix.
  {
    const std::string header = R"({"latents":{"dtype":"F64","shape":[1,24,64],"data_offsets":[0,12288]}})";
    std::ofstream out(path("f64.safetensors"), std::ios::binary);
    const uint64_t n = header.size();
    out.write(reinterpret_cast<const char*>(&n), 8);
    out << header;
    const std::vector<char> zeros(12288, 0);
    out.write(zeros.data(), std::streamsize(zeros.size()));
  }
  const Status st = capture([&] { load_init_latents(path("f64.safetensors"), 1, 64, 96); });
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find(path("f64.safetensors")), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("F64"), std::string::npos) << st.message();
}

}  // namespace
}  // namespace paradit
