// bf16 GEMMs through cuBLASLt with fused epilogues, for Backend::linear.
//
// Row-major y[M, N] = x[M, K]·w[N, K]ᵀ is, in cuBLASLt's column-major terms, D[N, M] = Aᵀ·B with A = w (a K×N
// column-major matrix, ld K) and B = x (K×M, ld = x's row stride): the "TN" layout that Hopper's fastest kernels
// take. The bias is a per-row vector of D, which is what CUBLASLT_EPILOGUE_BIAS adds.
//
// Descriptors, layouts and the algorithm are chosen on the first call for a shape (dimensions, leading
// dimensions, batch strides, epilogue, pointer alignments) and reused afterwards, so a steady-state call costs a
// hash lookup, one attribute write (the bias pointer) and cublasLtMatmul. The algorithm is picked by timing the
// heuristic's candidates on that first call's operands: at 2048² (H200) its first answer was up to 11% slower than
// the fastest for the GELU GEMMs, 5% over a forward's image-row GEMMs (bench/RESULTS.md). The timing synchronises
// the stream once per shape. It is skipped while a stream is captured into a CUDA graph and with
// PARADIT_GEMM_AUTOTUNE=0; a call that accumulates into y (whose value the timing would overwrite) leaves it to the
// shape's first call that does not. PARADIT_GEMM_AUTOTUNE=0 keeps the heuristic's first answer: the same
// algorithm in every process, so the same bits run to run (the timed pick can differ between runs whose
// candidates time alike).
//
// The epilogue GELU of cuBLASLt is the tanh approximation (as PyTorch relies on for gelu(approximate="tanh"));
// at bf16 output it is indistinguishable from the erf form anyway.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <unordered_map>

#include "paradit/backend/backend.h"
#include "paradit/core/allocator.h"

namespace paradit::cuda {

// One GEMM problem in row-major terms: per batch, y[rows, n] (row stride ldy) = x[rows, k] (row stride ldx)
// · w[n, k] (row stride ldw)ᵀ, over `batch` batches with the given batch strides (elements).
struct GemmProblem {
  int64_t rows = 0, n = 0, k = 0;
  int64_t ldx = 0, ldy = 0, ldw = 0;
  int64_t batch = 1, batch_stride_x = 0, batch_stride_y = 0;
};

class LtMatmul {
 public:
  // workspace_bytes of scratch are taken from `alloc` once and kept. autotune: pick algorithms by timing (above).
  LtMatmul(Allocator& alloc, size_t workspace_bytes, bool autotune);
  ~LtMatmul();
  LtMatmul(const LtMatmul&) = delete;
  LtMatmul& operator=(const LtMatmul&) = delete;

  // y = ep(x·wᵀ + bias), bf16 in and out, f32 accumulation; bias may be null. With `accumulate`, y's own value is
  // added to the product (cuBLASLt's β = 1, C = D = y).
  void linear(const GemmProblem& p, void* y, const void* x, const void* w, const void* bias, Epilogue ep,
              bool accumulate, cudaStream_t stream);

 private:
  // Everything the heuristic's choice depends on.
  struct Key {
    GemmProblem p;
    Epilogue ep;
    bool has_bias;
    uint16_t align_x, align_w, align_y, align_bias;  // bytes, ≤ 256
    bool operator==(const Key& o) const;
  };
  struct KeyHash {
    size_t operator()(const Key& k) const;
  };
  struct Plan;

  // The cached plan for key, built on first use (heuristic query included); null when cuBLASLt has none.
  Plan* plan_for(const Key& key, const void* bias);
  // Times each candidate of plan on these operands (y is overwritten) and keeps the fastest.
  void tune(Plan& plan, void* y, const void* x, const void* w, cudaStream_t stream);
  Key make_key(const GemmProblem& p, Epilogue ep, const void* y, const void* x, const void* w,
               const void* bias) const;

  Allocator& alloc_;
  cublasLtHandle_t handle_ = nullptr;
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
  bool autotune_;
  std::unordered_map<Key, std::unique_ptr<Plan>, KeyHash> cache_;
};

}  // namespace paradit::cuda
