// conv2d (NHWC, stride 1) as GEMMs. The output pixels are cut into tiles of at most kTilePixels; a tile's
// im2col matrix [n, kh·kw·Cin] (a row per output pixel: its receptive field in w's (kh, kw, Cin) order, zeros
// where the window hangs over the padding) is multiplied by w seen as [Cout, kh·kw·Cin] — which is what the
// [Cout, kh, kw, Cin] layout already is, row-major — in one single-threaded sgemm per tile, tiles spread over
// OpenMP threads as in linear. Memory stays at one tile per thread whatever the image size (a 1024×1024
// image's full im2col matrix at Cin = 128 would be 4.5 GiB). A 1×1 convolution without padding is a plain GEMM:
// BLAS reads the pixels straight from x when they are evenly strided.
//
// The product lands in a per-thread [n, Cout] scratch tile and is copied to y with the bias added: y may be
// any strided view, and the copy is noise next to the GEMM (Cout floats per pixel against 2·kh·kw·Cin·Cout
// flops).
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_check.h"

namespace paradit {
namespace {

// Output pixels per tile: 256 rows keep sgemm efficient, and the im2col tile (at most 256 × 3·3·512 floats,
// 4.5 MiB) bounded.
constexpr int64_t kTilePixels = 256;

// The element stride between consecutive pixels of an NHWC tensor when its B·H·W pixels are evenly spaced
// (dimensions of size 1 impose nothing), else 0.
int64_t even_pixel_stride(const Tensor& t) {
  int64_t stride = 0, span = 1;  // span: pixels covered by the dimensions already merged
  for (int d = 2; d >= 0; --d) {
    if (t.size(d) == 1) continue;
    if (stride == 0) stride = t.stride(d);
    else if (t.stride(d) != stride * span) return 0;
    span *= t.size(d);
  }
  return stride == 0 ? t.size(3) : stride;  // a single pixel: any stride ≥ Cin does
}

}  // namespace

void CpuBackend::conv2d(const Tensor& y, const Tensor& x, const Tensor& w, const Tensor& bias, int pad) {
  const char* op = "conv2d";
  cpu::require_f32_rows(op, "y", y);
  cpu::require_f32_rows(op, "x", x);
  cpu::require_f32_contiguous(op, "w", w);
  check_conv2d_shapes(y, x, w, pad);
  const int64_t B = x.size(0), H = x.size(1), W = x.size(2), Cin = x.size(3);
  const int64_t Cout = w.size(0), kh = w.size(1), kw = w.size(2);
  const int64_t Ho = y.size(1), Wo = y.size(2);
  if (bias.defined()) {
    cpu::require_f32_rows(op, "bias", bias);
    cpu::require_shape(op, "bias", bias, {Cout});
  }
  PD_REQUIRE(!cpu::may_overlap(y, x) && !cpu::may_overlap(y, w) && !cpu::may_overlap(y, bias), op, ": y ",
             y.desc(), " overlaps an input (x, w or bias)");
  const int64_t K = kh * kw * Cin;
  PD_REQUIRE(K <= INT32_MAX && Cout <= INT32_MAX, op, ": w ", w.desc(), " is too large for BLAS");
  if (y.numel() == 0) return;

  const int64_t P = B * Ho * Wo;
  // Small images still give every thread a tile.
  const int64_t tile = std::clamp<int64_t>((P + threads_ - 1) / threads_, 1, kTilePixels);
  const int64_t tiles = (P + tile - 1) / tile;
  const int64_t x_pixel_stride = even_pixel_stride(x);
  const bool direct = kh == 1 && kw == 1 && pad == 0 && x_pixel_stride >= Cin && x_pixel_stride <= INT32_MAX;
  // Per-thread scratch, allocated here so that running out of memory throws before the parallel region.
  const int64_t per_thread = (direct ? 0 : tile * K) + tile * Cout;
  const int nt = int(std::min<int64_t>(threads_, tiles));
  std::vector<float> scratch(size_t(nt * per_thread));
  const float* xb = x.data_as<float>();
  const float* wp = w.data_as<float>();
  const float* bp = bias.defined() ? bias.data_as<float>() : nullptr;
  float* yb = y.data_as<float>();
  cpu::parallel_for_dynamic(nt, tiles, [&](int64_t t) {
    const int64_t p0 = t * tile, n = std::min(tile, P - p0);
    float* cols = scratch.data() + omp_get_thread_num() * per_thread;
    float* prod = cols + (direct ? 0 : tile * K);
    const float* a = cols;
    int64_t lda = std::max<int64_t>(K, 1);
    if (direct) {
      a = xb + p0 * x_pixel_stride;
      lda = std::max<int64_t>(x_pixel_stride, 1);
    } else {
      for (int64_t i = 0; i < n; ++i) {
        const int64_t p = p0 + i, b = p / (Ho * Wo), oh = (p / Wo) % Ho, ow = p % Wo;
        float* row = cols + i * K;
        for (int64_t dy = 0; dy < kh; ++dy) {
          const int64_t iy = oh + dy - pad;
          for (int64_t dx = 0; dx < kw; ++dx) {
            const int64_t ix = ow + dx - pad;
            float* dst = row + (dy * kw + dx) * Cin;
            if (iy < 0 || iy >= H || ix < 0 || ix >= W) {
              std::fill(dst, dst + Cin, 0.0f);
            } else {
              const float* src = xb + b * x.stride(0) + iy * x.stride(1) + ix * x.stride(2);
              std::copy(src, src + Cin, dst);
            }
          }
        }
      }
    }
    if (K == 0) {  // BLAS may return without touching C when K = 0; the product is still zero
      std::fill(prod, prod + n * Cout, 0.0f);
    } else {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(n), int(Cout), int(K), 1.0f, a, int(lda), wp, int(K),
                  0.0f, prod, int(Cout));
    }
    for (int64_t i = 0; i < n; ++i) {
      const int64_t p = p0 + i, b = p / (Ho * Wo), oh = (p / Wo) % Ho, ow = p % Wo;
      float* yrow = yb + b * y.stride(0) + oh * y.stride(1) + ow * y.stride(2);
      const float* src = prod + i * Cout;
      if (bp)
        for (int64_t c = 0; c < Cout; ++c) yrow[c] = src[c] + bp[c];
      else
        std::copy(src, src + Cout, yrow);
    }
  });
}

}  // namespace paradit
