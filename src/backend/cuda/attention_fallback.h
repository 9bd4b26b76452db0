// Attention as GEMMs + a softmax kernel, for what cuDNN's fused SDPA does not cover: head dims above 256 (the
// VAE's single 512-wide head), configurations cuDNN refuses, and attention_biased (an additive f32 bias per
// head and/or a causal mask: T5's relative position bias, CLIP's causal mask).
//
// Per batch entry and per block of queries [i0, i0 + qb), for all heads at once:
//   1. scores[h] = scale·Q[h]·K[h]ᵀ — one cuBLASLt GEMM batched over heads, bf16 in, f32 out, read straight
//      from the strided [B, S, H, d] views (a head is a batch of the GEMM, its row stride the ld);
//   2. the softmax kernel (attention_softmax.cu) adds the bias, applies the causal mask, writes the normalised
//      probabilities as bf16 and the LSE;
//   3. out[h] = P[h]·V[h] — a second batched GEMM (f32 accumulation) writing bf16 straight into out's view.
// The block size keeps the f32 scores + bf16 probabilities under kScratchBytes whatever the sequence length
// (qb·H·Skv·6 bytes), so memory stays bounded: the VAE at 2048² (65536 tokens) works through ~680 queries
// at a time. Under a causal mask a block only scores the keys its last query sees.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <unordered_map>

#include "paradit/core/allocator.h"
#include "paradit/core/tensor.h"

namespace paradit::cuda {

class GemmAttention {
 public:
  explicit GemmAttention(cudaStream_t stream);
  ~GemmAttention();
  GemmAttention(const GemmAttention&) = delete;
  GemmAttention& operator=(const GemmAttention&) = delete;

  // out = softmax(scale·q·kᵀ + bias[h], causal mask)·v, bf16 [B, S, H, d] views with contiguous rows; lse f32
  // [B, H, Sq] or undefined; bias f32 [H, Sq, Skv] (last dim contiguous) or undefined. Shapes are validated by
  // the caller. A query that sees no key gets 0 (and lse −∞). Scratch comes from `alloc`.
  void run(const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v, float scale,
           const Tensor& bias, bool causal, Allocator& alloc);

  // Bytes of f32 scores + bf16 probabilities one block of queries may take.
  static constexpr int64_t kScratchBytes = int64_t(256) << 20;

 private:
  // A column-major batched GEMM D[m, n] = alpha·op(A)[m, k]·op(B)[k, n], bf16 A and B, f32 accumulation, D f32
  // or bf16; strides in elements.
  struct Gemm {
    int32_t trans_a = 0, trans_b = 0;  // cublasOperation_t
    int32_t d_type = 0;                // cudaDataType_t of D
    int64_t m = 0, n = 0, k = 0, lda = 0, ldb = 0, ldd = 0;
    int64_t batch = 1, stride_a = 0, stride_b = 0, stride_d = 0;
    uint16_t align_a = 0, align_b = 0, align_d = 0;  // bytes, ≤ 256
    bool operator==(const Gemm& o) const;
  };
  struct GemmHash {
    size_t operator()(const Gemm& g) const;
  };
  struct Plan;

  void gemm(Gemm g, const void* a, const void* b, void* d, float alpha, Allocator& alloc);
  Plan* plan_for(const Gemm& g);

  cudaStream_t stream_;
  cublasLtHandle_t handle_ = nullptr;
  std::unordered_map<Gemm, std::unique_ptr<Plan>, GemmHash> cache_;
};

}  // namespace paradit::cuda
