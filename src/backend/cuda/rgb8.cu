// 8-bit conversion of decoded images, the same arithmetic as the CPU backend's (and numpy's): every step rounded
// in f32 on its own — the explicit _rn intrinsics keep nvcc from fusing v·255 into an FMA with a later add.
#include <algorithm>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/dtype_dispatch.h"
#include "backend/cuda/rgb8.h"

namespace paradit::cuda {
namespace {

__device__ inline float as_float(float v) { return v; }
__device__ inline float as_float(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__global__ void __launch_bounds__(256) to_rgb8_kernel(const T* __restrict__ y, uint8_t* __restrict__ dst, int64_t n) {
  const int64_t step = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) {
    float v = __fadd_rn(__fmul_rn(as_float(y[i]), 0.5f), 0.5f);
    v = v > 0.0f ? v : 0.0f;  // NaN → 0
    v = v < 1.0f ? v : 1.0f;
    dst[i] = uint8_t(__float2int_rn(__fmul_rn(v, 255.0f)));  // round to nearest, ties to even
  }
}

}  // namespace

void launch_to_rgb8(const Tensor& y, uint8_t* dst, cudaStream_t stream) {
  const int64_t n = y.numel();
  if (n == 0) return;
  const int threads = 256;
  const int blocks = int(std::min<int64_t>((n + threads - 1) / threads, 65536));
  dispatch_float_dtype("to_rgb8", y.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    to_rgb8_kernel<T><<<blocks, threads, 0, stream>>>(static_cast<const T*>(y.data()), dst, n);
  });
  PD_CUDA_CHECK_LAUNCH("to_rgb8_kernel");
}

}  // namespace paradit::cuda
