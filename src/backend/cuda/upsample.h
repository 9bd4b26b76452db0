// Launcher of the nearest-neighbour ×2 upsampling (upsample.cu). Arguments are validated by the caller.
#pragma once

#include <cuda_runtime.h>

#include "paradit/core/tensor.h"

namespace paradit::cuda {

// y [B, 2H, 2W, C] = x [B, H, W, C] with every pixel repeated 2×2; same dtype (any), channels contiguous.
void launch_upsample_nearest2x(const Tensor& y, const Tensor& x, cudaStream_t stream);

}  // namespace paradit::cuda
