// Ring attention's log-sum-exp merge: one warp per (batch, head, query row). Lane 0 reads the two log-sum-exps and
// passes them round the warp, the lanes update the row's d outputs (contiguous, so the warp's accesses coalesce),
// and lane 0 writes the merged log-sum-exp. Memory-bound: one read of block_out and one read and write of out.
#include <cmath>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/lse_merge.h"
#include "backend/cuda/vec.cuh"

namespace paradit::cuda {
namespace {

struct MergeArgs {
  float* out;
  float* lse;
  const void* block_out;
  const float* block_lse;
  int64_t rows, S, H, D;
  int64_t o_b, o_s, o_h;     // out strides
  int64_t bo_b, bo_s, bo_h;  // block_out strides
  int64_t l_b, l_h, l_s;     // lse strides
  int64_t bl_b, bl_h, bl_s;  // block_lse strides
};

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(bf16 v) { return __bfloat162float(v); }

template <typename TB>
__global__ void lse_merge_kernel(MergeArgs a) {
  const int64_t row = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = int(threadIdx.x % 32);
  if (row >= a.rows) return;
  const int64_t s = row % a.S, h = (row / a.S) % a.H, b = row / (a.S * a.H);
  float* lp = a.lse + b * a.l_b + h * a.l_h + s * a.l_s;
  float lo = 0.0f, lb = 0.0f;
  if (lane == 0) {
    lo = *lp;
    lb = a.block_lse[b * a.bl_b + h * a.bl_h + s * a.bl_s];
  }
  lo = __shfl_sync(0xffffffffu, lo, 0);
  lb = __shfl_sync(0xffffffffu, lb, 0);
  if (lb == -INFINITY) return;  // the block had no keys for this row
  float* o = a.out + b * a.o_b + s * a.o_s + h * a.o_h;
  const TB* bo = static_cast<const TB*>(a.block_out) + b * a.bo_b + s * a.bo_s + h * a.bo_h;
  if (lo == -INFINITY) {  // nothing accumulated yet: take the block as it is
    for (int64_t i = lane; i < a.D; i += 32) o[i] = to_float(bo[i]);
    if (lane == 0) *lp = lb;
    return;
  }
  const float x = lb - lo;
  const float w = x >= 0.0f ? 1.0f / (1.0f + expf(-x)) : expf(x) / (1.0f + expf(x));  // σ(lb − lo)
  for (int64_t i = lane; i < a.D; i += 32) o[i] = fmaf(-w, o[i] - to_float(bo[i]), o[i]);
  if (lane == 0) *lp = lo - (fminf(-x, 0.0f) - log1pf(expf(-fabsf(x))));  // lo − log σ(lo − lb)
}

}  // namespace

void launch_lse_merge(const Tensor& out, const Tensor& lse, const Tensor& block_out, const Tensor& block_lse,
                      cudaStream_t stream) {
  MergeArgs a{out.data_as<float>(),
              lse.data_as<float>(),
              block_out.data(),
              block_lse.data_as<float>(),
              out.size(0) * out.size(2) * out.size(1),
              out.size(1),
              out.size(2),
              out.size(3),
              out.stride(0),
              out.stride(1),
              out.stride(2),
              block_out.stride(0),
              block_out.stride(1),
              block_out.stride(2),
              lse.stride(0),
              lse.stride(1),
              lse.stride(2),
              block_lse.stride(0),
              block_lse.stride(1),
              block_lse.stride(2)};
  if (a.rows == 0 || a.D == 0) return;
  constexpr int kThreads = 256;  // 8 rows per block
  const int64_t blocks = (a.rows * 32 + kThreads - 1) / kThreads;
  PD_REQUIRE(blocks < (int64_t(1) << 31), "lse_merge: ", a.rows, " rows is above the grid limit");
  if (block_out.dtype() == DType::kF32)
    lse_merge_kernel<float><<<unsigned(blocks), kThreads, 0, stream>>>(a);
  else
    lse_merge_kernel<bf16><<<unsigned(blocks), kThreads, 0, stream>>>(a);
  PD_CUDA_CHECK_LAUNCH("lse_merge_kernel");
}

}  // namespace paradit::cuda
