// What the cuBLASLt users (linear layers, the attention fallback) share: setting descriptor and layout
// attributes with checked errors, pointer alignment, and the heuristic query for an algorithm.
#pragma once

#include <cublasLt.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "backend/cuda/cuda_check.h"

namespace paradit::cuda {

// The alignment (bytes, at most 256) every batch's pointer shares: p's, and the batch stride's when batch > 1.
inline uint16_t alignment_of(const void* p, int64_t batch, int64_t batch_stride_bytes) {
  uint64_t v = reinterpret_cast<uintptr_t>(p) | 256u;
  if (batch > 1) v |= uint64_t(batch_stride_bytes);
  return uint16_t(v & (~v + 1));  // lowest set bit
}

template <typename T>
void set_desc(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t attr, const T& value, const char* what) {
  const cublasStatus_t st = cublasLtMatmulDescSetAttribute(d, attr, &value, sizeof(T));
  if (st != CUBLAS_STATUS_SUCCESS) throw_cublas(st, what, __FILE__, __LINE__);
}

template <typename T>
void set_layout(cublasLtMatrixLayout_t l, cublasLtMatrixLayoutAttribute_t attr, const T& value, const char* what) {
  const cublasStatus_t st = cublasLtMatrixLayoutSetAttribute(l, attr, &value, sizeof(T));
  if (st != CUBLAS_STATUS_SUCCESS) throw_cublas(st, what, __FILE__, __LINE__);
}

struct LtAlgo {
  cublasLtMatmulAlgo_t algo;
  size_t workspace = 0;
};

// The heuristic's algorithms for desc over layouts a, b and c (c is also the output layout) that run within
// max_workspace bytes, given the operands' pointer alignments (bytes): best guess first, at most kLtCandidates;
// empty when cuBLASLt has none. Throws on any other cuBLASLt failure.
inline constexpr int kLtCandidates = 8;
std::vector<LtAlgo> lt_algos(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc, cublasLtMatrixLayout_t a,
                             cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t c, uint32_t align_a, uint32_t align_b,
                             uint32_t align_c, uint64_t max_workspace);

// The first of them; nullopt when there is none.
inline std::optional<LtAlgo> lt_first_algo(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc,
                                           cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b,
                                           cublasLtMatrixLayout_t c, uint32_t align_a, uint32_t align_b,
                                           uint32_t align_c, uint64_t max_workspace) {
  const std::vector<LtAlgo> all = lt_algos(handle, desc, a, b, c, align_a, align_b, align_c, max_workspace);
  if (all.empty()) return std::nullopt;
  return all.front();
}

}  // namespace paradit::cuda
