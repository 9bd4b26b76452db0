// to_rgb8: decoded f32 values to 8 bits, numpy's way (Backend::to_rgb8).
#include <algorithm>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_check.h"

namespace paradit {

void CpuBackend::to_rgb8(const Tensor& y, uint8_t* dst) {
  PD_REQUIRE(y.defined() && y.dtype() == DType::kF32 && y.device().is_cpu() && y.is_contiguous(),
             "to_rgb8: y must be a contiguous f32 host tensor, got ", y.defined() ? y.desc() : std::string("none"));
  PD_REQUIRE(dst != nullptr || y.numel() == 0, "to_rgb8: no destination");
  const float* src = y.data_as<float>();
  const int64_t n = y.numel();
  // Written to vectorise (with -fno-trapping-math, CMakeLists.txt) and threaded for large images (2048² is 12.6 M
  // values): `v > 0 ? v : 0` is false for NaN, and adding and taking away 1.5·2²³ rounds a value in [0, 255] to
  // the nearest integer, ties to even, in the default rounding mode — what std::nearbyint does, at a fraction of
  // the cost.
  constexpr float kRound = 12582912.0f;
  constexpr int64_t kChunk = int64_t(1) << 16;
  cpu::parallel_for(threads_, (n + kChunk - 1) / kChunk, kChunk, [&](int64_t c) {
    const int64_t end = std::min(n, (c + 1) * kChunk);
    for (int64_t i = c * kChunk; i < end; ++i) {
      float v = src[i] * 0.5f + 0.5f;
      v = v > 0.0f ? v : 0.0f;
      v = v < 1.0f ? v : 1.0f;
      dst[i] = uint8_t(int((v * 255.0f + kRound) - kRound));
    }
  });
}

}  // namespace paradit
