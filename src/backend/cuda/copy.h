// Launchers of the copy/fill family (copy.cu). Arguments are validated by the caller (CudaBackendImpl); these
// only choose the kernel variant and launch it on `stream`.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "paradit/core/tensor.h"

namespace paradit::cuda {

// dst = src converted, both device tensors of the same shape, any strides, any of f32/bf16/f16/fp8-e4m3.
void launch_copy(const Tensor& dst, const Tensor& src, cudaStream_t stream);
void launch_fill(const Tensor& dst, float value, cudaStream_t stream);
// Backend::fill_random's formula (core/random.h) evaluated per element, rounded to dst's dtype.
void launch_fill_random(const Tensor& dst, uint64_t seed, float stddev, cudaStream_t stream);

// Whether this binary holds kernels the current device can run (a build for other architectures fails every
// launch with "no kernel image"); *why says what is missing.
bool kernels_runnable_on_current_device(std::string* why);

}  // namespace paradit::cuda
