// im2col for conv2d's GEMM path: one thread per unit (up to 16 bytes of channels) of one kernel tap of one
// output pixel, a raw copy from x or zeros where the tap falls in the padding. Consecutive threads take
// consecutive units of a tap, so both the reads (a pixel's channels) and the writes (a row of cols) coalesce.
#include <algorithm>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/im2col.h"
#include "backend/cuda/unit_copy.cuh"

namespace paradit::cuda {
namespace {

struct Im2colArgs {
  char* cols;
  const char* x;
  int64_t ld_cols;              // bytes
  int64_t p0, n, Ho, Wo, H, W;  // pixels
  int64_t kw, taps, pad;        // taps = kh·kw
  int64_t units;                // units per tap (Cin·es / unit)
  int64_t xb, xh, xw;           // bytes
};

// 32-bit index arithmetic (the launcher checks the ranges); byte offsets into x are 64-bit.
template <typename U>
__global__ void __launch_bounds__(256) im2col_kernel(Im2colArgs a, uint32_t total) {
  const uint32_t step = gridDim.x * blockDim.x;
  const uint32_t units = uint32_t(a.units), taps = uint32_t(a.taps), kw = uint32_t(a.kw);
  const uint32_t Wo = uint32_t(a.Wo), Ho = uint32_t(a.Ho);
  for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += step) {
    const uint32_t u = i % units;
    const uint32_t t = i / units;
    const uint32_t tap = t % taps, row = t / taps;
    const uint32_t p = uint32_t(a.p0) + row;
    const uint32_t ow = p % Wo, q = p / Wo;
    const uint32_t oh = q % Ho, b = q / Ho;
    const int64_t iy = int64_t(oh) + int64_t(tap / kw) - a.pad, ix = int64_t(ow) + int64_t(tap % kw) - a.pad;
    U v{};
    if (iy >= 0 && iy < a.H && ix >= 0 && ix < a.W)
      v = reinterpret_cast<const U*>(a.x + int64_t(b) * a.xb + iy * a.xh + ix * a.xw)[u];
    reinterpret_cast<U*>(a.cols + int64_t(row) * a.ld_cols)[int64_t(tap) * units + u] = v;
  }
}

}  // namespace

void launch_im2col(void* cols, int64_t ld_cols, const Tensor& x, int64_t p0, int64_t n, int64_t Ho, int64_t Wo,
                   int64_t kh, int64_t kw, int64_t pad, cudaStream_t stream) {
  const int64_t es = int64_t(x.element_size());
  const int64_t B = x.size(0), H = x.size(1), W = x.size(2), Cin = x.size(3);
  if (n == 0 || Cin == 0) return;
  Im2colArgs a{static_cast<char*>(cols),
               static_cast<const char*>(x.data()),
               ld_cols * es,
               p0,
               n,
               Ho,
               Wo,
               H,
               W,
               kw,
               kh * kw,
               pad,
               0,
               x.stride(0) * es,
               x.stride(1) * es,
               x.stride(2) * es};
  // A tap's Cin channels start at (tap·Cin)·es in a row of cols: the unit must divide that too.
  const int unit = unit_bytes({uint64_t(Cin * es), uint64_t(a.ld_cols), uint64_t(B > 1 ? a.xb : 0),
                               uint64_t(H > 1 ? a.xh : 0), uint64_t(W > 1 ? a.xw : 0), addr(a.cols), addr(a.x)});
  a.units = Cin * es / unit;
  const int64_t total = n * a.taps * a.units;
  PD_REQUIRE(total < (int64_t(1) << 31) && p0 + n <= B * Ho * Wo && B * Ho * Wo < (int64_t(1) << 31), "conv2d: im2col",
             " tile of ", n, " pixels × ", a.taps, " taps × ", Cin, " channels is above the kernel's 32-bit range");
  const int64_t blocks = std::min<int64_t>((total + 255) / 256, int64_t(1) << 20);
  dispatch_unit(unit, [&](auto tag) {
    using U = typename decltype(tag)::type;
    im2col_kernel<U><<<unsigned(blocks), 256, 0, stream>>>(a, uint32_t(total));
  });
  PD_CUDA_CHECK_LAUNCH("im2col_kernel");
}

}  // namespace paradit::cuda
