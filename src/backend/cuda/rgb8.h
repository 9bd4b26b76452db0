// Launcher of the 8-bit conversion of decoded images (rgb8.cu). Arguments are validated by the caller.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "paradit/core/tensor.h"

namespace paradit::cuda {

// dst[i] (device, y.numel() bytes) = round((y[i]·0.5 + 0.5).clamp(0, 1)·255), ties to even, NaN → 0; y contiguous
// f32 or bf16.
void launch_to_rgb8(const Tensor& y, uint8_t* dst, cudaStream_t stream);

}  // namespace paradit::cuda
