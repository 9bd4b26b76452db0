// Ring attention's log-sum-exp merge on the host, in double (the reference the CUDA kernel is judged by).
#include <algorithm>
#include <cmath>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_check.h"

namespace paradit {
namespace {

// σ(x) and log σ(x), stable for any x including ±∞.
double sigmoid(double x) { return x >= 0 ? 1.0 / (1.0 + std::exp(-x)) : std::exp(x) / (1.0 + std::exp(x)); }
double log_sigmoid(double x) { return std::min(x, 0.0) - std::log1p(std::exp(-std::fabs(x))); }

}  // namespace

void CpuBackend::lse_merge(const Tensor& out, const Tensor& lse, const Tensor& block_out, const Tensor& block_lse) {
  check_lse_merge(out, lse, block_out, block_lse);
  const int64_t B = out.size(0), S = out.size(1), H = out.size(2), D = out.size(3);
  float* o = out.data_as<float>();
  float* l = lse.data_as<float>();
  const float* bo = block_out.data_as<float>();
  const float* bl = block_lse.data_as<float>();
  cpu::parallel_for(threads_, B * H, 8 * S * D, [&](int64_t bh) {
    const int64_t b = bh / H, h = bh % H;
    for (int64_t s = 0; s < S; ++s) {
      float& acc_lse = l[b * lse.stride(0) + h * lse.stride(1) + s * lse.stride(2)];
      const double lo = acc_lse, lb = bl[b * block_lse.stride(0) + h * block_lse.stride(1) + s * block_lse.stride(2)];
      if (lb == -INFINITY) continue;  // the block had no keys
      float* orow = o + b * out.stride(0) + s * out.stride(1) + h * out.stride(2);
      const float* brow = bo + b * block_out.stride(0) + s * block_out.stride(1) + h * block_out.stride(2);
      if (lo == -INFINITY) {  // nothing accumulated yet
        std::copy(brow, brow + D, orow);
        acc_lse = float(lb);
        continue;
      }
      const double w = sigmoid(lb - lo);
      for (int64_t i = 0; i < D; ++i) orow[i] = float(orow[i] - w * (double(orow[i]) - brow[i]));
      acc_lse = float(lo - log_sigmoid(lo - lb));
    }
  });
}

}  // namespace paradit
