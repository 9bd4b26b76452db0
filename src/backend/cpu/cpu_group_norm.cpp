// group_norm over NHWC images. Statistics come from fixed chunks of pixels: each chunk's per-group mean and
// M2 (sum of squared deviations from that mean) in two passes while the chunk is in cache, then the chunks of a
// (batch, group) merged in order with Chan et al.'s pairwise formula. That reads x twice in all (not three
// times as a global two-pass would), has no E[x²] − E[x]² cancellation, and gives the same result for every
// thread count since chunk boundaries do not depend on it. A last pass normalises, applies the affine and SiLU.
//
// group_norm_sums / group_norm_apply are the two halves for an image split over ranks: sums about a given shift
// in double (per channel lane, then folded per group with the chunks in a fixed order), and the last pass with
// the statistics those sums give.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_check.h"
#include "backend/cpu/cpu_math.h"

namespace paradit {
namespace {

constexpr int64_t kChunkElements = 16384;  // 64 KiB of x per chunk: the second pass reads it from L2

// The checks group_norm and group_norm_apply share: x, y f32 [B, H, W, C]; weight, bias [C]; y is x or apart
// from it.
void check_norm_args(const char* op, const Tensor& y, const Tensor& x, const Tensor& weight, const Tensor& bias,
                     int groups, float eps) {
  cpu::require_f32_rows(op, "y", y);
  cpu::require_f32_rows(op, "x", x);
  PD_REQUIRE(x.dim() == 4, op, ": x ", x.desc(), " must be [B, H, W, C]");
  cpu::require_shape(op, "y", y, x.shape());
  const int64_t C = x.size(3);
  PD_REQUIRE(groups >= 1 && C % groups == 0, op, ": ", groups, " groups do not divide the C = ", C,
             " channels of x ", x.desc());
  cpu::require_f32_rows(op, "weight", weight);
  cpu::require_shape(op, "weight", weight, {C});
  cpu::require_f32_rows(op, "bias", bias);
  cpu::require_shape(op, "bias", bias, {C});
  PD_REQUIRE(eps >= 0, op, ": eps must be >= 0, got ", eps);
  PD_REQUIRE(!cpu::may_overlap(y, weight) && !cpu::may_overlap(y, bias), op, ": y ", y.desc(),
             " overlaps weight or bias");
  // y may alias x exactly: the statistics are complete before anything is written, and each pixel is read
  // before it is written.
  PD_REQUIRE(!cpu::may_overlap(y, x) || (y.data() == x.data() && y.strides() == x.strides()), op, ": y ",
             y.desc(), " partially overlaps x ", x.desc(), " (only exact aliasing is allowed)");
}

// The last pass: y = (x − mean[b, c])·scale[b, c] + bias[c], then SiLU, pixel by pixel.
void normalize(int threads, const Tensor& y, const Tensor& x, const std::vector<double>& mean_bc,
               const std::vector<double>& scale_bc, const Tensor& bias, bool silu) {
  const int64_t B = x.size(0), W = x.size(2), C = x.size(3), HW = x.size(1) * W;
  const float* xb = x.data_as<float>();
  float* yb = y.data_as<float>();
  const float* bi = bias.data_as<float>();
  cpu::parallel_for(threads, B * HW, (silu ? 20 : 4) * C, [&](int64_t i) {
    const int64_t b = i / HW, p = i % HW;
    const float* xp = xb + b * x.stride(0) + (p / W) * x.stride(1) + (p % W) * x.stride(2);
    float* yp = yb + b * y.stride(0) + (p / W) * y.stride(1) + (p % W) * y.stride(2);
    const double* mean = mean_bc.data() + b * C;
    const double* scale = scale_bc.data() + b * C;
    for (int64_t c = 0; c < C; ++c) yp[c] = float((xp[c] - mean[c]) * scale[c] + double(bi[c]));
    if (silu)
      for (int64_t c = 0; c < C; ++c) yp[c] = cpu::silu(yp[c]);
  });
}

// The split GroupNorm's per-group operands: sums f32 [2, B, groups]; shift f32 [B, groups] or undefined (0).
void check_split_args(const char* op, const Tensor& sums, const Tensor& shift, int64_t B, int groups) {
  cpu::require_f32_rows(op, "sums", sums);
  cpu::require_shape(op, "sums", sums, {2, B, groups});
  if (!shift.defined()) return;
  cpu::require_f32_rows(op, "shift", shift);
  cpu::require_shape(op, "shift", shift, {B, groups});
}

double shift_at(const Tensor& shift, int64_t b, int64_t g) {
  return shift.defined() ? double(shift.data_as<float>()[b * shift.stride(0) + g * shift.stride(1)]) : 0.0;
}

}  // namespace

void CpuBackend::group_norm(const Tensor& y, const Tensor& x, const Tensor& weight, const Tensor& bias, int groups,
                            float eps, bool silu) {
  const char* op = "group_norm";
  check_norm_args(op, y, x, weight, bias, groups, eps);
  const int64_t B = x.size(0), H = x.size(1), W = x.size(2), C = x.size(3);
  if (y.numel() == 0) return;

  const int64_t G = groups, Cg = C / G, HW = H * W;
  const int64_t chunk_pixels = std::max<int64_t>(1, kChunkElements / C);
  const int64_t chunks = (HW + chunk_pixels - 1) / chunk_pixels;  // per image
  const float* xb = x.data_as<float>();
  auto x_pixel = [&](int64_t b, int64_t p) {
    return xb + b * x.stride(0) + (p / W) * x.stride(1) + (p % W) * x.stride(2);
  };

  // Pass 1: per chunk and group, (mean, M2). Sums run per channel (independent lanes, so they vectorise)
  // and are folded into their group at the end of the chunk.
  const int nt = int(std::min<int64_t>(threads_, B * chunks));
  std::vector<double> chunk_stats(size_t(B * chunks * G * 2));
  std::vector<double> lanes(size_t(nt * 2 * C));
  cpu::parallel_for(nt, B * chunks, 2 * chunk_pixels * C, [&](int64_t i) {
    const int64_t b = i / chunks, p0 = (i % chunks) * chunk_pixels, p1 = std::min(HW, p0 + chunk_pixels);
    const double n = double((p1 - p0) * Cg);
    double* acc = lanes.data() + omp_get_thread_num() * 2 * C;
    double* mean_c = acc + C;  // the group mean, repeated for each of its channels
    double* st = chunk_stats.data() + i * G * 2;
    std::fill(acc, acc + C, 0.0);
    for (int64_t p = p0; p < p1; ++p) {
      const float* xp = x_pixel(b, p);
      for (int64_t c = 0; c < C; ++c) acc[c] += xp[c];
    }
    for (int64_t g = 0; g < G; ++g) {
      double s = 0;
      for (int64_t c = g * Cg; c < (g + 1) * Cg; ++c) s += acc[c];
      st[2 * g] = s / n;
      std::fill(mean_c + g * Cg, mean_c + (g + 1) * Cg, s / n);
    }
    std::fill(acc, acc + C, 0.0);
    for (int64_t p = p0; p < p1; ++p) {
      const float* xp = x_pixel(b, p);
      for (int64_t c = 0; c < C; ++c) {
        const double d = xp[c] - mean_c[c];
        acc[c] += d * d;
      }
    }
    for (int64_t g = 0; g < G; ++g) {
      double m2 = 0;
      for (int64_t c = g * Cg; c < (g + 1) * Cg; ++c) m2 += acc[c];
      st[2 * g + 1] = m2;
    }
  });

  // Merge the chunks of each (batch, group) and fold the statistics into per-(batch, channel) coefficients:
  // y = (x − mean)·(rstd·weight) + bias.
  std::vector<double> mean_bc(size_t(B * C)), scale_bc(size_t(B * C));
  const float* w = weight.data_as<float>();
  cpu::parallel_for(threads_, B * G, 4 * chunks, [&](int64_t i) {
    const int64_t b = i / G, g = i % G;
    double n = 0, mean = 0, m2 = 0;
    for (int64_t k = 0; k < chunks; ++k) {
      const double* st = chunk_stats.data() + ((b * chunks + k) * G + g) * 2;
      const double nk = double((std::min(HW, (k + 1) * chunk_pixels) - k * chunk_pixels) * Cg);
      const double delta = st[0] - mean, total = n + nk;
      mean += delta * nk / total;
      m2 += st[1] + delta * delta * n * nk / total;
      n = total;
    }
    const double rstd = 1.0 / std::sqrt(m2 / n + double(eps));
    for (int64_t c = g * Cg; c < (g + 1) * Cg; ++c) {
      mean_bc[size_t(b * C + c)] = mean;
      scale_bc[size_t(b * C + c)] = rstd * double(w[c]);
    }
  });

  normalize(threads_, y, x, mean_bc, scale_bc, bias, silu);
}

void CpuBackend::group_norm_sums(const Tensor& sums, const Tensor& x, int groups, const Tensor& shift) {
  const char* op = "group_norm_sums";
  cpu::require_f32_rows(op, "x", x);
  PD_REQUIRE(x.dim() == 4, op, ": x ", x.desc(), " must be [B, H, W, C]");
  const int64_t B = x.size(0), W = x.size(2), C = x.size(3), HW = x.size(1) * W;
  PD_REQUIRE(groups >= 1 && C % groups == 0, op, ": ", groups, " groups do not divide the C = ", C,
             " channels of x ", x.desc());
  check_split_args(op, sums, shift, B, groups);
  PD_REQUIRE(!cpu::may_overlap(sums, x) && !cpu::may_overlap(sums, shift), op, ": sums ", sums.desc(),
             " overlaps x or shift");
  const int64_t G = groups, Cg = C / G;
  const int64_t chunk_pixels = std::max<int64_t>(1, kChunkElements / std::max<int64_t>(C, 1));
  const int64_t chunks = (HW + chunk_pixels - 1) / chunk_pixels;  // per image; 0 for an empty band
  // Per chunk and channel lane: Σ (x − m) and Σ (x − m)².
  std::vector<double> lanes(size_t(B * chunks * 2 * C));
  const float* xb = x.data_as<float>();
  cpu::parallel_for(threads_, B * chunks, 2 * chunk_pixels * C, [&](int64_t i) {
    const int64_t b = i / chunks, p0 = (i % chunks) * chunk_pixels, p1 = std::min(HW, p0 + chunk_pixels);
    double* s1 = lanes.data() + i * 2 * C;
    double* s2 = s1 + C;
    std::vector<double> m(static_cast<size_t>(C));  // the shift of each channel's group
    for (int64_t c = 0; c < C; ++c) m[size_t(c)] = shift_at(shift, b, c / Cg);
    for (int64_t p = p0; p < p1; ++p) {
      const float* xp = xb + b * x.stride(0) + (p / W) * x.stride(1) + (p % W) * x.stride(2);
      for (int64_t c = 0; c < C; ++c) {
        const double d = double(xp[c]) - m[size_t(c)];
        s1[c] += d;
        s2[c] += d * d;
      }
    }
  });
  float* out = sums.data_as<float>();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t g = 0; g < G; ++g) {
      double t1 = 0, t2 = 0;
      for (int64_t k = 0; k < chunks; ++k) {
        const double* s1 = lanes.data() + (b * chunks + k) * 2 * C;
        for (int64_t c = g * Cg; c < (g + 1) * Cg; ++c) {
          t1 += s1[c];
          t2 += s1[C + c];
        }
      }
      out[b * sums.stride(1) + g * sums.stride(2)] = float(t1);
      out[sums.stride(0) + b * sums.stride(1) + g * sums.stride(2)] = float(t2);
    }
}

void CpuBackend::group_norm_apply(const Tensor& y, const Tensor& x, const Tensor& sums, const Tensor& shift,
                                  double count, const Tensor& weight, const Tensor& bias, int groups, float eps,
                                  bool silu) {
  const char* op = "group_norm_apply";
  check_norm_args(op, y, x, weight, bias, groups, eps);
  const int64_t B = x.size(0), C = x.size(3), G = groups, Cg = C / G;
  check_split_args(op, sums, shift, B, groups);
  PD_REQUIRE(count > 0, op, ": count must be positive, got ", count);
  if (y.numel() == 0) return;
  std::vector<double> mean_bc(size_t(B * C)), scale_bc(size_t(B * C));
  const float* s = sums.data_as<float>();
  const float* w = weight.data_as<float>();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t g = 0; g < G; ++g) {
      const double m1 = double(s[b * sums.stride(1) + g * sums.stride(2)]) / count;
      const double m2 = double(s[sums.stride(0) + b * sums.stride(1) + g * sums.stride(2)]) / count;
      const double rstd = 1.0 / std::sqrt(std::max(m2 - m1 * m1, 0.0) + double(eps));
      for (int64_t c = g * Cg; c < (g + 1) * Cg; ++c) {
        mean_bc[size_t(b * C + c)] = shift_at(shift, b, g) + m1;
        scale_bc[size_t(b * C + c)] = rstd * double(w[c]);
      }
    }
  normalize(threads_, y, x, mean_bc, scale_bc, bias, silu);
}

}  // namespace paradit
