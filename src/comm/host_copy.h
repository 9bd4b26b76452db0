// Strided host-memory moves and sums behind the in-process transport.
#pragma once

#include "paradit/core/tensor.h"

namespace paradit {

// dst = src: host tensors of the same shape and dtype, any strides. Nothing to do when they are the same view.
void host_copy(const Tensor& dst, const Tensor& src);

// acc[i] += src[i] for the elements of src in row-major order; acc holds src.numel() floats.
void host_accumulate(float* acc, const Tensor& src);

// dst[i] = acc[i] (row-major order), converted to dst's dtype.
void host_store(const Tensor& dst, const float* acc);

}  // namespace paradit
