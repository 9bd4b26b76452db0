// Launchers of the text-encoder ops (text_ops.cu). Arguments are validated by the caller.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "paradit/core/tensor.h"

namespace paradit::cuda {

// out[b, s, :] = table[ids[b·S + s], :].  out [B, S, D], table [V, D], same dtype, last dims contiguous; ids is a
// device array of B·S indices already checked to lie in [0, V).
void launch_embedding(const Tensor& out, const Tensor& table, const int32_t* ids, cudaStream_t stream);

}  // namespace paradit::cuda
