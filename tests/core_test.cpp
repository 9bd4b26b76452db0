// Core: dtype conversions, tensor views, the caching allocator, Status/Error.
#include <cmath>
#include <cstdlib>
#include <map>
#include <vector>

#include "paradit/core/allocator.h"
#include "paradit/core/status.h"
#include "paradit/core/tensor.h"
#include "test_util.h"

namespace paradit {
namespace {

TEST(DType, Bf16RoundTripAndRounding) {
  for (float v : {1.0f, -2.5f, 3.14159f, 1e-20f, 65504.0f, -0.0f}) {
    const float back = bf16_to_f32(f32_to_bf16(v));
    EXPECT_NEAR(back, v, std::fabs(v) * 0.0079f) << v;
  }
  // 1 + 2^-8 is halfway between two bf16 values: ties go to even (1.0).
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(1.0f + 1.0f / 256)), 1.0f);
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(NAN))));
}

TEST(DType, F16MatchesIeee) {
  EXPECT_EQ(f16_to_f32(0x3c00), 1.0f);
  EXPECT_EQ(f16_to_f32(0xc000), -2.0f);
  EXPECT_EQ(f16_to_f32(0x7bff), 65504.0f);
  EXPECT_EQ(f16_to_f32(0x0001), std::ldexp(1.0f, -24));
  EXPECT_NEAR(f16_to_f32(f32_to_f16(3e-7f)), 3e-7f, std::ldexp(1.0f, -25));  // subnormal: absolute step 2^-24
  for (float v : {0.1f, -7.25f, 1000.5f, 6.2e-5f}) {
    EXPECT_NEAR(f16_to_f32(f32_to_f16(v)), v, std::fabs(v) * 1e-3f) << v;
  }
  EXPECT_EQ(f32_to_f16(1e6f), 0x7c00);
}

TEST(DType, Fp8E4M3) {
  EXPECT_EQ(f8e4m3_to_f32(0x38), 1.0f);    // exp 7 (bias 7), mantissa 0
  EXPECT_EQ(f8e4m3_to_f32(0x7e), 448.0f);  // largest finite
  EXPECT_EQ(f8e4m3_to_f32(0xb8), -1.0f);
  EXPECT_EQ(f8e4m3_to_f32(0x01), std::ldexp(1.0f, -9));
  EXPECT_TRUE(std::isnan(f8e4m3_to_f32(0x7f)));
}

TEST(Tensor, ViewsShareStorageAndStride) {
  Tensor t = test::random_host({2, 3, 4}, 1);
  Tensor s = t.slice(2, 1, 2);
  EXPECT_EQ(s.shape(), (Shape{2, 3, 2}));
  EXPECT_FALSE(s.is_contiguous());
  EXPECT_EQ(s.data_as<float>()[0], t.data_as<float>()[1]);
  Tensor sel = t.select(1, 2);
  EXPECT_EQ(sel.shape(), (Shape{2, 4}));
  EXPECT_EQ(sel.data_as<float>()[sel.stride(0)], t.data_as<float>()[12 + 8]);
  Tensor u = t.unflatten(2, 2, -1);
  EXPECT_EQ(u.shape(), (Shape{2, 3, 2, 2}));
  EXPECT_EQ(t.view({6, -1}).shape(), (Shape{6, 4}));
  EXPECT_THROW(s.view({12}), Error);
  EXPECT_THROW(t.slice(0, 1, 2), Error);
  Tensor tr = t.transpose(0, 2);
  EXPECT_EQ(tr.shape(), (Shape{4, 3, 2}));
  EXPECT_EQ(tr.stride(2), 12);
}

class CountingRaw : public RawAllocator {
 public:
  explicit CountingRaw(size_t limit) : limit_(limit) {}
  Device device() const override { return Device::cpu(); }
  void* raw_allocate(size_t b) override {
    if (used_ + b > limit_) return nullptr;
    used_ += b;
    sizes_[p_next_] = b;
    return reinterpret_cast<void*>(p_next_++ * 4096 * 1024 + 4096);
  }
  void raw_free(void* p) override {
    const auto key = (reinterpret_cast<uintptr_t>(p) - 4096) / (4096 * 1024);
    used_ -= sizes_[key];
    sizes_.erase(key);
  }
  size_t used_ = 0, limit_;
  uintptr_t p_next_ = 1;
  std::map<uintptr_t, size_t> sizes_;
};

TEST(CachingAllocator, ReusesFreedBlocksAndTracksPeak) {
  auto raw = std::make_unique<CountingRaw>(size_t(64) << 20);
  CountingRaw* r = raw.get();
  CachingAllocator a(std::move(raw));
  void* p = a.allocate(3 << 20);
  a.deallocate(p);
  void* q = a.allocate((3 << 20) - 100);  // rounds to the same bucket: no new raw allocation
  EXPECT_EQ(p, q);
  EXPECT_EQ(a.stats().raw_allocs, 1u);
  void* big = a.allocate(40 << 20);
  EXPECT_GE(a.stats().peak_in_use, size_t(43) << 20);
  a.deallocate(q);
  a.deallocate(big);
  // A request the raw allocator can only meet once the cache is released.
  void* huge = a.allocate(60 << 20);
  EXPECT_NE(huge, nullptr);
  EXPECT_LE(r->used_, size_t(64) << 20);
  EXPECT_THROW(a.allocate(80 << 20), Error);
  a.deallocate(huge);
  a.release_cached();
  EXPECT_EQ(r->used_, 0u);
}

TEST(Status, CaptureTurnsErrorsIntoStatus) {
  Status s = capture([] { PD_THROW(kNotFound, "tensor ", "x.weight", " missing"); });
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  EXPECT_EQ(s.message(), "tensor x.weight missing");
  EXPECT_TRUE(capture([] {}).ok());
  Result<int> r = Status(StatusCode::kCorruptData, "bad");
  EXPECT_FALSE(r.ok());
  EXPECT_THROW(r.value(), Error);
}

}  // namespace
}  // namespace paradit
