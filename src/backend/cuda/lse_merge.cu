// Ring attention's log-sum-exp merge of up to 16 blocks in one pass: one warp per (batch, head, query row). Lane j
// reads block j's log-sum-exp; a warp max and sum give L = log Σ exp(lse_j); each lane then accumulates its share
// of the row's d outputs over the blocks with weights exp(lse_j − L) (rows are contiguous, so the warp's accesses
// coalesce) and writes them once; lane 0 writes L. Memory-bound: each block's output is read once, out written
// once — against a read and a write of an f32 accumulator per block when blocks are folded in one at a time.
#include <cmath>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/lse_merge.h"
#include "backend/cuda/vec.cuh"
#include "paradit/backend/backend.h"

namespace paradit::cuda {
namespace {

constexpr int kMaxBlocks = Backend::kMaxLseMergeBlocks;
static_assert(kMaxBlocks <= 32, "one lane per block");

struct MergeArgs {
  void* out;
  float* lse;  // may be null
  const void* block_out[kMaxBlocks];
  const float* block_lse[kMaxBlocks];
  int blocks;
  int64_t rows, S, H, D;
  int64_t o_b, o_s, o_h;     // out strides
  int64_t bo_b, bo_s, bo_h;  // block output strides
  int64_t l_b, l_h, l_s;     // lse strides
  int64_t bl_b, bl_h, bl_s;  // block lse strides
};

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(bf16 v) { return __bfloat162float(v); }
template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ bf16 from_float<bf16>(float v) {
  return __float2bfloat16(v);
}

template <typename TO, typename TB>
__global__ void lse_merge_kernel(MergeArgs a) {
  const int64_t row = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = int(threadIdx.x % 32);
  if (row >= a.rows) return;
  const int64_t s = row % a.S, h = (row / a.S) % a.H, b = row / (a.S * a.H);
  const float mine = lane < a.blocks ? a.block_lse[lane][b * a.bl_b + h * a.bl_h + s * a.bl_s] : -INFINITY;
  float m = mine;
  for (int off = 16; off > 0; off /= 2) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, off));
  float total = m == -INFINITY ? 0.0f : expf(mine - m);
  for (int off = 16; off > 0; off /= 2) total += __shfl_xor_sync(0xffffffffu, total, off);
  const float L = total > 0.0f ? m + logf(total) : -INFINITY;
  const float w_mine = total > 0.0f ? expf(mine - L) : 0.0f;

  TO* o = static_cast<TO*>(a.out) + b * a.o_b + s * a.o_s + h * a.o_h;
  const int64_t at = b * a.bo_b + s * a.bo_s + h * a.bo_h;
  for (int64_t i = lane; i < a.D; i += 32) {
    float acc = 0.0f;
    for (int j = 0; j < a.blocks; ++j) {
      const float w = __shfl_sync(0xffffffffu, w_mine, j);
      if (w != 0.0f) acc = fmaf(w, to_float(static_cast<const TB*>(a.block_out[j])[at + i]), acc);  // 0: no keys
    }
    o[i] = from_float<TO>(acc);
  }
  if (lane == 0 && a.lse) a.lse[b * a.l_b + h * a.l_h + s * a.l_s] = L;
}

}  // namespace

void launch_lse_merge(const Tensor& out, const Tensor& lse, const std::vector<Tensor>& block_outs,
                      const std::vector<Tensor>& block_lses, cudaStream_t stream) {
  MergeArgs a{};
  a.out = out.data();
  a.lse = lse.defined() ? lse.data_as<float>() : nullptr;
  a.blocks = int(block_outs.size());
  PD_CHECK(a.blocks >= 1 && a.blocks <= kMaxBlocks && block_lses.size() == block_outs.size());
  for (int j = 0; j < a.blocks; ++j) {
    a.block_out[j] = block_outs[size_t(j)].data();
    a.block_lse[j] = block_lses[size_t(j)].data_as<float>();
  }
  a.S = out.size(1);
  a.H = out.size(2);
  a.D = out.size(3);
  a.rows = out.size(0) * a.H * a.S;
  a.o_b = out.stride(0), a.o_s = out.stride(1), a.o_h = out.stride(2);
  const Tensor &bo = block_outs[0], &bl = block_lses[0];
  a.bo_b = bo.stride(0), a.bo_s = bo.stride(1), a.bo_h = bo.stride(2);
  if (lse.defined()) a.l_b = lse.stride(0), a.l_h = lse.stride(1), a.l_s = lse.stride(2);
  a.bl_b = bl.stride(0), a.bl_h = bl.stride(1), a.bl_s = bl.stride(2);
  if (a.rows == 0 || a.D == 0) return;
  constexpr int kThreads = 256;  // 8 rows per block
  const int64_t grid = (a.rows * 32 + kThreads - 1) / kThreads;
  PD_REQUIRE(grid < (int64_t(1) << 31), "lse_merge: ", a.rows, " rows is above the grid limit");
  const bool out_f32 = out.dtype() == DType::kF32, blocks_f32 = bo.dtype() == DType::kF32;
  if (out_f32 && blocks_f32)
    lse_merge_kernel<float, float><<<unsigned(grid), kThreads, 0, stream>>>(a);
  else if (out_f32)
    lse_merge_kernel<float, bf16><<<unsigned(grid), kThreads, 0, stream>>>(a);
  else if (blocks_f32)
    lse_merge_kernel<bf16, float><<<unsigned(grid), kThreads, 0, stream>>>(a);
  else
    lse_merge_kernel<bf16, bf16><<<unsigned(grid), kThreads, 0, stream>>>(a);
  PD_CUDA_CHECK_LAUNCH("lse_merge_kernel");
}

}  // namespace paradit::cuda
