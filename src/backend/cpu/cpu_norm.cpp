// layer_norm_modulate (alone and after a gated add), layer_norm and rms_norm_rope: one row per loop iteration,
// statistics accumulated in double (this is the reference the bf16 kernels are judged by, so it should not add
// error of its own).
#include <cmath>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_check.h"

namespace paradit {
namespace {

struct RowStats {
  double mean, rstd;  // rstd = 1/√(biased variance + eps)
};

// Two passes over the row: no cancellation when |mean| ≫ std.
RowStats row_stats(const float* x, int64_t D, float eps) {
  double sum = 0;
  for (int64_t i = 0; i < D; ++i) sum += x[i];
  const double mean = sum / double(D);
  double sq = 0;
  for (int64_t i = 0; i < D; ++i) {
    const double c = x[i] - mean;
    sq += c * c;
  }
  return {mean, 1.0 / std::sqrt(sq / double(D) + double(eps))};
}

}  // namespace

void CpuBackend::layer_norm_modulate(const Tensor& y, const Tensor& x, const Tensor& shift, const Tensor& scale,
                                     float eps) {
  const char* op = "layer_norm_modulate";
  cpu::require_f32_rows(op, "y", y);
  cpu::require_f32_rows(op, "x", x);
  PD_REQUIRE(x.dim() == 3, op, ": x ", x.desc(), " must be [B, S, D]");
  cpu::require_shape(op, "y", y, x.shape());
  const int64_t B = x.size(0), S = x.size(1), D = x.size(2);
  PD_REQUIRE(shift.defined() == scale.defined(), op, ": shift and scale must both be given or both be undefined");
  const bool modulate = shift.defined();
  if (modulate) {
    cpu::require_f32_rows(op, "shift", shift);
    cpu::require_f32_rows(op, "scale", scale);
    cpu::require_shape(op, "shift", shift, {B, D});
    cpu::require_shape(op, "scale", scale, {B, D});
    PD_REQUIRE(!cpu::may_overlap(y, shift) && !cpu::may_overlap(y, scale), op, ": y ", y.desc(),
               " overlaps shift or scale");
  }
  PD_REQUIRE(eps >= 0, op, ": eps must be >= 0, got ", eps);
  // y may alias x exactly: a row's statistics are complete before the row is written.
  PD_REQUIRE(!cpu::may_overlap(y, x) || (y.data() == x.data() && y.strides() == x.strides()), op, ": y ",
             y.desc(), " partially overlaps x ", x.desc(), " (only exact aliasing is allowed)");
  if (y.numel() == 0) return;
  const cpu::Rows xr(x), yr(y);
  cpu::parallel_for(threads_, B * S, 8 * D, [&](int64_t r) {
    const float* xp = xr.row(r);
    float* yp = yr.row(r);
    const auto [mean, rstd] = row_stats(xp, D, eps);
    if (modulate) {
      const int64_t b = r / S;
      const float* sh = shift.data_as<float>() + b * shift.stride(0);
      const float* sc = scale.data_as<float>() + b * scale.stride(0);
      for (int64_t i = 0; i < D; ++i) yp[i] = float((xp[i] - mean) * rstd * (1.0 + double(sc[i])) + double(sh[i]));
    } else {
      for (int64_t i = 0; i < D; ++i) yp[i] = float((xp[i] - mean) * rstd);
    }
  });
}

// The reference is the two ops in sequence, which is what the fused kernels must reproduce.
void CpuBackend::gated_add_layer_norm_modulate(const Tensor& y, const Tensor& x, const Tensor& delta,
                                               const Tensor& gate, const Tensor& shift, const Tensor& scale,
                                               float eps) {
  const char* op = "gated_add_layer_norm_modulate";
  // Everything the second op checks is checked before the first one writes x.
  const bool shapes_fit = x.dim() == 3 && y.shape() == x.shape() && shift.defined() && scale.defined() &&
                          shift.shape() == Shape{x.size(0), x.size(2)} && scale.shape() == shift.shape();
  PD_REQUIRE(shapes_fit,
             op, ": y ", y.desc(), ", x ", x.desc(), ", shift ", shift.desc(), " and scale ", scale.desc(),
             " must be [B, S, D], [B, S, D], [B, D] and [B, D]");
  PD_REQUIRE(!cpu::may_overlap(y, delta) && !cpu::may_overlap(y, gate), op, ": y ", y.desc(),
             " overlaps delta or gate");
  gated_add(x, delta, gate);
  layer_norm_modulate(y, x, shift, scale, eps);
}

void CpuBackend::layer_norm(const Tensor& y, const Tensor& x, const Tensor& weight, const Tensor& bias, float eps) {
  const char* op = "layer_norm";
  cpu::require_f32_rows(op, "y", y);
  cpu::require_f32_rows(op, "x", x);
  cpu::require_shape(op, "y", y, x.shape());
  const int64_t D = x.size(-1);
  cpu::require_f32_rows(op, "weight", weight);
  cpu::require_shape(op, "weight", weight, {D});
  if (bias.defined()) {
    cpu::require_f32_rows(op, "bias", bias);
    cpu::require_shape(op, "bias", bias, {D});
  }
  PD_REQUIRE(eps >= 0, op, ": eps must be >= 0, got ", eps);
  PD_REQUIRE(!cpu::may_overlap(y, weight) && !cpu::may_overlap(y, bias), op, ": y ", y.desc(),
             " overlaps weight or bias");
  // y may alias x exactly: a row's statistics are complete before the row is written.
  PD_REQUIRE(!cpu::may_overlap(y, x) || (y.data() == x.data() && y.strides() == x.strides()), op, ": y ",
             y.desc(), " partially overlaps x ", x.desc(), " (only exact aliasing is allowed)");
  if (y.numel() == 0) return;
  const cpu::Rows xr(x), yr(y);
  const float* w = weight.data_as<float>();
  const float* b = bias.defined() ? bias.data_as<float>() : nullptr;
  cpu::parallel_for(threads_, xr.count(), 8 * D, [&](int64_t r) {
    const float* xp = xr.row(r);
    float* yp = yr.row(r);
    const auto [mean, rstd] = row_stats(xp, D, eps);
    if (b) {
      for (int64_t i = 0; i < D; ++i) yp[i] = float((xp[i] - mean) * rstd * double(w[i]) + double(b[i]));
    } else {
      for (int64_t i = 0; i < D; ++i) yp[i] = float((xp[i] - mean) * rstd * double(w[i]));
    }
  });
}

void CpuBackend::rms_norm_rope(const Tensor& y, const Tensor& x, const Tensor& weight, const Tensor& cos,
                               const Tensor& sin, float eps) {
  const char* op = "rms_norm_rope";
  cpu::require_f32_rows(op, "y", y);
  cpu::require_f32_rows(op, "x", x);
  PD_REQUIRE(x.dim() == 4, op, ": x ", x.desc(), " must be [B, S, H, d]");
  cpu::require_shape(op, "y", y, x.shape());
  const int64_t S = x.size(1), H = x.size(2), d = x.size(3);
  cpu::require_f32_rows(op, "weight", weight);
  cpu::require_shape(op, "weight", weight, {d});
  PD_REQUIRE(cos.defined() == sin.defined(), op, ": cos and sin must both be given or both be undefined");
  const bool rope = cos.defined();
  if (rope) {
    cpu::require_f32_rows(op, "cos", cos);
    cpu::require_f32_rows(op, "sin", sin);
    cpu::require_shape(op, "cos", cos, {S, d});
    cpu::require_shape(op, "sin", sin, {S, d});
    PD_REQUIRE(d % 2 == 0, op, ": RoPE needs an even head dim, x is ", x.desc());
  }
  PD_REQUIRE(eps >= 0, op, ": eps must be >= 0, got ", eps);
  // y may alias x exactly (each element is read before it is written, pair by pair); a shifted overlap would
  // read values already overwritten.
  PD_REQUIRE(!cpu::may_overlap(y, x) || (y.data() == x.data() && y.strides() == x.strides()), op, ": y ",
             y.desc(), " partially overlaps x ", x.desc(), " (only exact aliasing is allowed)");
  if (y.numel() == 0) return;
  const cpu::Rows xr(x), yr(y);
  const float* w = weight.data_as<float>();
  cpu::parallel_for(threads_, xr.count(), 6 * d, [&](int64_t r) {
    const float* xp = xr.row(r);
    float* yp = yr.row(r);
    double sq = 0;
    for (int64_t i = 0; i < d; ++i) sq += double(xp[i]) * double(xp[i]);
    const double rms = 1.0 / std::sqrt(sq / double(d) + double(eps));
    if (!rope) {
      for (int64_t i = 0; i < d; ++i) yp[i] = float(double(xp[i]) * rms * double(w[i]));
      return;
    }
    const int64_t s = (r / H) % S;
    const float* c = cos.data_as<float>() + s * cos.stride(0);
    const float* sn = sin.data_as<float>() + s * sin.stride(0);
    for (int64_t k = 0; k < d; k += 2) {
      const double a = double(xp[k]) * rms * double(w[k]);
      const double b = double(xp[k + 1]) * rms * double(w[k + 1]);
      yp[k] = float(a * c[k] - b * sn[k]);
      yp[k + 1] = float(b * c[k + 1] + a * sn[k + 1]);
    }
  });
}

}  // namespace paradit
