// The softmax of the GEMM attention path: one block per (query, head) row of the f32 score block. Pass 1 reads
// the visible logits (16-byte loads; plus the bias, scalar) and keeps a running (max, Σ exp(· − max)) per
// thread, merged across the block in a fixed order; pass 2 reads them again (from L2) and writes the
// normalised probabilities as bf16, zeros where keys are hidden. Rows of up to 65536 keys (the VAE's attention
// at 2048²) are far too long for registers or shared memory, hence the two reads.
#include <algorithm>
#include <cmath>

#include "backend/cuda/attention_softmax.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/vec.cuh"
#include "paradit/core/status.h"

namespace paradit::cuda {
namespace {

constexpr float kNegInf = -INFINITY;

// (m, l) ⊕ (m2, l2): the running max and the sum of exp(x − max) of two disjoint sets of logits.
__device__ __forceinline__ void merge(float& m, float& l, float m2, float l2) {
  const float mx = fmaxf(m, m2);
  if (mx == kNegInf) return;                      // both empty: (−∞, 0)
  l = l * __expf(m - mx) + l2 * __expf(m2 - mx);  // exp(−∞) = 0 for an empty side
  m = mx;
}

__device__ __forceinline__ void accumulate(float& m, float& l, float x) {
  if (x == kNegInf) return;  // a masked logit weighs nothing (and would make −∞ − (−∞) = NaN)
  if (x > m) {
    l = l * __expf(m - x) + 1.0f;
    m = x;
  } else {
    l += __expf(x - m);  // also propagates a NaN logit into l
  }
}

template <bool BIAS>
__global__ void __launch_bounds__(512) attention_softmax_kernel(SoftmaxProblem p) {
  __shared__ float sm[32], sl[32];
  __shared__ float stat[2];
  const int64_t r = blockIdx.x, h = blockIdx.y;
  const int64_t i = p.i0 + r;  // absolute query index
  const int64_t seen = p.causal ? min(p.nkv, i + 1) : p.nkv;
  const float* s = p.scores + h * p.head_stride + r * p.ld;
  bf16* out = static_cast<bf16*>(p.probs) + h * p.head_stride + r * p.ld;
  const float* bias = BIAS ? p.bias + h * p.bias_h + r * p.bias_q : nullptr;
  const int64_t nvec = (p.nkv + 3) / 4;  // the buffer's rows are padded to a multiple of 4 (ld)

  float m = kNegInf, l = 0.0f;
  for (int64_t c = threadIdx.x; c < (seen + 3) / 4; c += blockDim.x) {
    const float4 v4 = reinterpret_cast<const float4*>(s)[c];
    const float v[4] = {v4.x, v4.y, v4.z, v4.w};
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int64_t j = 4 * c + e;
      if (j < seen) accumulate(m, l, BIAS ? v[e] + bias[j * p.bias_k] : v[e]);
    }
  }
  // Block merge in a fixed order: warps by shuffles, then warp 0 over the warps' results.
#pragma unroll
  for (int off = 16; off > 0; off /= 2) {
    const float m2 = __shfl_xor_sync(0xffffffffu, m, off), l2 = __shfl_xor_sync(0xffffffffu, l, off);
    merge(m, l, m2, l2);
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
  if (lane == 0) {
    sm[warp] = m;
    sl[warp] = l;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    float tm = kNegInf, tl = 0.0f;
    for (int w = 0; w < warps; ++w) merge(tm, tl, sm[w], sl[w]);
    stat[0] = tm;
    stat[1] = tl;
    if (p.lse) p.lse[h * p.lse_h + r * p.lse_q] = tm == kNegInf ? kNegInf : tm + logf(tl);
  }
  __syncthreads();
  const float mx = stat[0];
  const float inv = stat[0] == kNegInf ? 0.0f : 1.0f / stat[1];

  for (int64_t c = threadIdx.x; c < nvec; c += blockDim.x) {
    float o[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    if (4 * c < seen && inv != 0.0f) {
      const float4 v4 = reinterpret_cast<const float4*>(s)[c];
      const float v[4] = {v4.x, v4.y, v4.z, v4.w};
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int64_t j = 4 * c + e;
        if (j < seen) {
          const float x = BIAS ? v[e] + bias[j * p.bias_k] : v[e];
          o[e] = __expf(x - mx) * inv;  // x = −∞ gives exactly 0
        }
      }
    }
    store_f32<4>(out + 4 * c, o);
  }
}

}  // namespace

void launch_attention_softmax(const SoftmaxProblem& p, cudaStream_t stream) {
  if (p.rows == 0 || p.heads == 0) return;
  PD_REQUIRE(p.ld % 4 == 0 && p.head_stride % 4 == 0 && reinterpret_cast<uintptr_t>(p.scores) % 16 == 0 &&
                 reinterpret_cast<uintptr_t>(p.probs) % 8 == 0,
             "attention softmax: misaligned score buffers (ld ", p.ld, ", head stride ", p.head_stride, ")");
  PD_REQUIRE(p.heads <= 65535 && p.rows < (int64_t(1) << 31), "attention softmax: ", p.heads, " heads × ", p.rows,
             " queries is above the grid limits");
  const int64_t nvec = (p.nkv + 3) / 4;
  const unsigned threads = unsigned(std::clamp<int64_t>((nvec + 31) / 32 * 32, 32, 512));
  const dim3 grid(unsigned(p.rows), unsigned(p.heads));
  if (p.bias)
    attention_softmax_kernel<true><<<grid, threads, 0, stream>>>(p);
  else
    attention_softmax_kernel<false><<<grid, threads, 0, stream>>>(p);
  PD_CUDA_CHECK_LAUNCH("attention_softmax_kernel");
}

}  // namespace paradit::cuda
