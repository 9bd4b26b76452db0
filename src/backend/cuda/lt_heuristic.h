// The one place that asks cuBLASLt's heuristic for an algorithm (linear layers and the attention fallback).
#pragma once

#include <cublasLt.h>

#include <cstddef>
#include <cstdint>
#include <optional>

namespace paradit::cuda {

struct LtAlgo {
  cublasLtMatmulAlgo_t algo;
  size_t workspace = 0;
};

// The heuristic's first algorithm for desc over layouts a, b and c (c is also the output layout) that succeeds
// within max_workspace bytes, given the operands' pointer alignments (bytes); nullopt when cuBLASLt has none.
// Throws on any other cuBLASLt failure.
std::optional<LtAlgo> lt_first_algo(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc, cublasLtMatrixLayout_t a,
                                    cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t c, uint32_t align_a,
                                    uint32_t align_b, uint32_t align_c, uint64_t max_workspace);

}  // namespace paradit::cuda
