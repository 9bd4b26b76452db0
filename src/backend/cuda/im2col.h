// Launcher of the im2col gather of conv2d's GEMM path (im2col.cu). Arguments are validated by the caller.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "paradit/core/tensor.h"

namespace paradit::cuda {

// cols[i, (dy·kw + dx)·Cin + c] = x[b, oh + dy − pad, ow + dx − pad, c] (0 outside the image) for the output
// pixels p = p0 + i, i < n, of the [B, Ho, Wo] output grid (p = (b·Ho + oh)·Wo + ow). x [B, H, W, Cin] with
// contiguous channels, any dtype; cols has x's dtype and row stride ld_cols ≥ kh·kw·Cin elements.
void launch_im2col(void* cols, int64_t ld_cols, const Tensor& x, int64_t p0, int64_t n, int64_t Ho, int64_t Wo,
                   int64_t kh, int64_t kw, int64_t pad, cudaStream_t stream);

}  // namespace paradit::cuda
