// upsample_nearest2x: each output row (b, oy) is input row (b, oy/2) with every pixel written twice.
#include <algorithm>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_check.h"

namespace paradit {

void CpuBackend::upsample_nearest2x(const Tensor& y, const Tensor& x) {
  const char* op = "upsample_nearest2x";
  cpu::require_f32_rows(op, "y", y);
  cpu::require_f32_rows(op, "x", x);
  PD_REQUIRE(x.dim() == 4, op, ": x ", x.desc(), " must be [B, H, W, C]");
  const int64_t B = x.size(0), H = x.size(1), W = x.size(2), C = x.size(3);
  cpu::require_shape(op, "y", y, {B, 2 * H, 2 * W, C});
  PD_REQUIRE(!cpu::may_overlap(y, x), op, ": y ", y.desc(), " overlaps x ", x.desc());
  if (y.numel() == 0) return;
  const float* xb = x.data_as<float>();
  float* yb = y.data_as<float>();
  cpu::parallel_for(threads_, B * 2 * H, 2 * W * C, [&](int64_t r) {
    const int64_t b = r / (2 * H), oy = r % (2 * H);
    const float* xrow = xb + b * x.stride(0) + (oy / 2) * x.stride(1);
    float* yrow = yb + b * y.stride(0) + oy * y.stride(1);
    for (int64_t ox = 0; ox < 2 * W; ++ox) {
      const float* src = xrow + (ox / 2) * x.stride(2);
      std::copy(src, src + C, yrow + ox * y.stride(2));
    }
  });
}

}  // namespace paradit
