#include "paradit/parallel/lse_merge.h"

#include <algorithm>
#include <cmath>

#include "paradit/core/status.h"

namespace paradit {

namespace {

// σ(x) and log σ(x) in double, stable for any x including ±∞.
double sigmoid(double x) { return x >= 0 ? 1.0 / (1.0 + std::exp(-x)) : std::exp(x) / (1.0 + std::exp(x)); }
double log_sigmoid(double x) { return std::min(x, 0.0) - std::log1p(std::exp(-std::fabs(x))); }

void merge_host(const Tensor& out, const Tensor& lse, const Tensor& block_out, const Tensor& block_lse) {
  const int64_t B = out.size(0), S = out.size(1), H = out.size(2), D = out.size(3);
  float* o = out.data_as<float>();
  float* l = lse.data_as<float>();
  const float* bo = block_out.data_as<float>();
  const float* bl = block_lse.data_as<float>();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
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
}

void require_rows(const Tensor& t, const char* name) {
  PD_REQUIRE(t.defined() && t.dim() >= 1 && t.stride(-1) == 1, "lse_merge: ", name,
             " must be defined with a contiguous last dimension, got ", t.defined() ? t.desc() : std::string("none"));
}

}  // namespace

void lse_merge(Backend& be, const Tensor& out, const Tensor& lse, const Tensor& block_out, const Tensor& block_lse) {
  require_rows(out, "out");
  require_rows(lse, "lse");
  require_rows(block_out, "block_out");
  require_rows(block_lse, "block_lse");
  PD_REQUIRE(out.dim() == 4 && block_out.shape() == out.shape(), "lse_merge: out ", out.desc(), " and block_out ",
             block_out.desc(), " must be the same [B, S, H, d]");
  const Shape lse_shape = {out.size(0), out.size(2), out.size(1)};
  PD_REQUIRE(lse.shape() == lse_shape && block_lse.shape() == lse_shape, "lse_merge: lse ", lse.desc(),
             " and block_lse ", block_lse.desc(), " must be f32", shape_str(lse_shape));
  PD_REQUIRE(out.dtype() == DType::kF32 && lse.dtype() == DType::kF32 && block_lse.dtype() == DType::kF32,
             "lse_merge: the accumulators and block_lse are f32, got ", out.desc(), ", ", lse.desc(), ", ",
             block_lse.desc());
  for (const Tensor* t : {&out, &lse, &block_out, &block_lse})
    PD_REQUIRE(t->device() == be.device(), "lse_merge: ", t->desc(), " is not on ", be.device().str());

  if (be.device().is_cpu() && block_out.dtype() == DType::kF32) {
    merge_host(out, lse, block_out, block_lse);
    return;
  }
  Tensor ho = be.download_f32(out), hl = be.download_f32(lse);
  merge_host(ho, hl, be.download_f32(block_out), be.download_f32(block_lse));
  be.copy(out, ho);
  be.copy(lse, hl);
  be.synchronize();  // ho and hl are freed on return while the copies may still read them
}

}  // namespace paradit
