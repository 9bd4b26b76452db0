// Nearest-neighbour ×2 upsampling of NHWC images: each thread reads one unit (up to 16 bytes) of an input pixel
// once and writes it to the four output pixels it covers. A pure copy, so it moves raw bytes in the widest unit
// that the channel row, the strides and the addresses allow.
#include <algorithm>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/unit_copy.cuh"
#include "backend/cuda/upsample.h"

namespace paradit::cuda {
namespace {

struct UpArgs {
  char* y;
  const char* x;
  int64_t H, W, units;             // input height, width; units per pixel
  int64_t xb, xh, xw, yb, yh, yw;  // byte strides
};

template <typename U, typename Index>
__global__ void __launch_bounds__(256) upsample_nearest2x_kernel(UpArgs a, Index n) {
  const Index step = Index(gridDim.x) * Index(blockDim.x);
  const Index units = Index(a.units), W = Index(a.W), H = Index(a.H);
  for (Index i = Index(blockIdx.x) * Index(blockDim.x) + Index(threadIdx.x); i < n; i += step) {
    const Index u = i % units;
    Index t = i / units;
    const Index ix = t % W;
    t /= W;
    const Index iy = t % H;
    const Index b = t / H;
    const U v = reinterpret_cast<const U*>(a.x + int64_t(b) * a.xb + int64_t(iy) * a.xh + int64_t(ix) * a.xw)[u];
    char* y0 = a.y + int64_t(b) * a.yb + 2 * int64_t(iy) * a.yh + 2 * int64_t(ix) * a.yw;
    reinterpret_cast<U*>(y0)[u] = v;
    reinterpret_cast<U*>(y0 + a.yw)[u] = v;
    reinterpret_cast<U*>(y0 + a.yh)[u] = v;
    reinterpret_cast<U*>(y0 + a.yh + a.yw)[u] = v;
  }
}

}  // namespace

void launch_upsample_nearest2x(const Tensor& y, const Tensor& x, cudaStream_t stream) {
  const int64_t B = x.size(0), H = x.size(1), W = x.size(2), C = x.size(3);
  const int64_t es = int64_t(x.element_size());
  if (B * H * W * C == 0) return;
  UpArgs a{static_cast<char*>(y.data()),
           static_cast<const char*>(x.data()),
           H,
           W,
           0,
           x.stride(0) * es,
           x.stride(1) * es,
           x.stride(2) * es,
           y.stride(0) * es,
           y.stride(1) * es,
           y.stride(2) * es};
  // Strides of size-1 dimensions are never used (y's H and W dimensions are at least 2).
  const int unit =
      unit_bytes({uint64_t(C * es), uint64_t(B > 1 ? a.xb : 0), uint64_t(H > 1 ? a.xh : 0), uint64_t(W > 1 ? a.xw : 0),
                  uint64_t(B > 1 ? a.yb : 0), uint64_t(a.yh), uint64_t(a.yw), addr(a.y), addr(a.x)});
  a.units = C * es / unit;
  const int64_t n = B * H * W * a.units;
  const int64_t blocks = std::min<int64_t>((n + 255) / 256, int64_t(1) << 20);
  dispatch_unit(unit, [&](auto tag) {
    using U = typename decltype(tag)::type;
    if (n < (int64_t(1) << 31))
      upsample_nearest2x_kernel<U, uint32_t><<<unsigned(blocks), 256, 0, stream>>>(a, uint32_t(n));
    else
      upsample_nearest2x_kernel<U, int64_t><<<unsigned(blocks), 256, 0, stream>>>(a, n);
  });
  PD_CUDA_CHECK_LAUNCH("upsample_nearest2x_kernel");
}

}  // namespace paradit::cuda
