// Ring attention's log-sum-exp merge on the host, in double (the reference the CUDA kernel is judged by).
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_check.h"

namespace paradit {

void CpuBackend::lse_merge(const Tensor& out, const Tensor& lse, const std::vector<Tensor>& block_outs,
                           const std::vector<Tensor>& block_lses) {
  check_lse_merge(out, lse, block_outs, block_lses);
  const int64_t B = out.size(0), S = out.size(1), H = out.size(2), D = out.size(3);
  const size_t n = block_outs.size();
  const Tensor &bo0 = block_outs[0], &bl0 = block_lses[0];
  float* o = out.data_as<float>();
  cpu::parallel_for(threads_, B * H, 8 * S * D * int64_t(n), [&](int64_t bh) {
    const int64_t b = bh / H, h = bh % H;
    std::vector<double> w(n);
    std::vector<double> acc(static_cast<size_t>(D));
    for (int64_t s = 0; s < S; ++s) {
      const int64_t lse_at = b * bl0.stride(0) + h * bl0.stride(1) + s * bl0.stride(2);
      double m = -std::numeric_limits<double>::infinity();
      for (size_t j = 0; j < n; ++j) m = std::max(m, double(block_lses[j].data_as<float>()[lse_at]));
      double total = 0;
      if (m != -std::numeric_limits<double>::infinity())
        for (size_t j = 0; j < n; ++j) total += std::exp(double(block_lses[j].data_as<float>()[lse_at]) - m);
      const double L = total > 0 ? m + std::log(total) : -std::numeric_limits<double>::infinity();
      for (size_t j = 0; j < n; ++j)
        w[j] = total > 0 ? std::exp(double(block_lses[j].data_as<float>()[lse_at]) - L) : 0.0;
      std::fill(acc.begin(), acc.end(), 0.0);
      const int64_t row = b * bo0.stride(0) + s * bo0.stride(1) + h * bo0.stride(2);
      for (size_t j = 0; j < n; ++j) {
        if (w[j] == 0) continue;  // also keeps a keyless block's undefined output out
        const float* brow = block_outs[j].data_as<float>() + row;
        for (int64_t i = 0; i < D; ++i) acc[size_t(i)] += w[j] * brow[i];
      }
      float* orow = o + b * out.stride(0) + s * out.stride(1) + h * out.stride(2);
      for (int64_t i = 0; i < D; ++i) orow[i] = float(acc[size_t(i)]);
      if (lse.defined()) lse.data_as<float>()[b * lse.stride(0) + h * lse.stride(1) + s * lse.stride(2)] = float(L);
    }
  });
}

}  // namespace paradit
