// Launcher of the row softmax of the GEMM attention path (attention_softmax.cu). Arguments come from
// GemmAttention (attention_fallback.cpp), which owns the buffers.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace paradit::cuda {

// One block of queries [i0, i0 + rows) of one batch entry, for every head h < heads:
//   scores f32 [heads, rows, ld] (head stride head_stride, all in elements; ld a multiple of 4 and the buffer
//   16-byte aligned): scale·q·kᵀ for keys [0, nkv);
//   bias (optional) f32, element (h, i, j) at bias[h·bias_h + (i − i0)·bias_q + j·bias_k] (the caller offsets
//   the pointer to query i0);
//   probs bf16, same indexing as scores: written with softmax_j(scores + bias) over the keys the query sees
//   (j ≤ i when causal, i being the absolute query index), 0 for the others and for every key of a query that
//   sees none (or whose visible logits are all −∞);
//   lse (optional) f32, element (h, i) at lse[h·lse_h + (i − i0)·lse_q]: max + ln Σ exp(· − max) over the
//   visible keys, −∞ when there are none.
struct SoftmaxProblem {
  const float* scores = nullptr;
  void* probs = nullptr;  // bf16
  const float* bias = nullptr;
  float* lse = nullptr;
  int64_t heads = 0, rows = 0, nkv = 0, ld = 0, head_stride = 0;
  int64_t i0 = 0;
  bool causal = false;
  int64_t bias_h = 0, bias_q = 0, bias_k = 0;
  int64_t lse_h = 0, lse_q = 0;
};

void launch_attention_softmax(const SoftmaxProblem& p, cudaStream_t stream);

}  // namespace paradit::cuda
