// Fused per-head RMSNorm + RoPE on q or k in place. A group of LANES lanes owns one (b, s, h) row of d elements
// (for d = 128: 16 lanes, one 16-byte vector each, two rows per warp); the sum of squares is a shuffle
// reduction inside the group, and each lane's vectors hold whole (2k, 2k+1) pairs, so the rotation needs no
// data from other lanes. Rows are ordered (b, s, h) with h fastest, so consecutive groups share the cos/sin row
// of their token, which stays in L1/L2.
//
// q and k of attention go through one launch (launch_qk_norm_rope): a group normalises a head of q and the same
// head of k, so two loads per lane are in flight and the cos/sin of the token are read once for both.
//
// Rows wider than a warp can hold in registers (above 2048 elements at 16-byte alignment, 256 otherwise: T5's
// T5LayerNorm normalises whole 4096-wide rows as one "head") take a block-per-row kernel instead: the block
// sums the squares of its row, then reads the row again (from L1/L2) to normalise and write it.
#include <algorithm>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/rms_norm_rope.h"
#include "backend/cuda/vec.cuh"

namespace paradit::cuda {
namespace {

struct RopeArgs {
  bf16* y;
  const bf16* x;
  const bf16* weight;
  bf16* y2;  // a second tensor (k beside q) of the same shape and strides, with its own weight; PAIR kernels only
  const bf16* x2;
  const bf16* weight2;
  const float* cos;  // null: no rotation
  const float* sin;
  int64_t rows, S, H, d;
  int64_t x_b, x_s, x_h, y_b, y_s, y_h, cos_s, sin_s;  // strides in elements
  float eps;
};

constexpr int kThreads = 256;

// PAIR: the group also normalises the same row of x2 into y2 (attention's k beside its q): both rows' loads are in
// flight together, and the token's cos/sin are read once for both.
template <int VEC, int LANES, int VPL, bool ROPE, bool PAIR = false>
__global__ void __launch_bounds__(kThreads) rms_norm_rope_kernel(RopeArgs a) {
  constexpr int kRowsPerBlock = kThreads / LANES;
  const int64_t row = int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.x / LANES;
  if (row >= a.rows) return;  // the whole group leaves together: its shuffles below stay consistent
  const int lane = threadIdx.x % LANES;
  const int warp_lane = threadIdx.x & 31;
  const unsigned mask =
      LANES == 32 ? 0xffffffffu : (((1u << (LANES % 32)) - 1u) << (warp_lane & ~(LANES - 1)));

  const int64_t h = row % a.H, t = row / a.H;
  const int64_t s = t % a.S, b = t / a.S;
  constexpr int P = PAIR ? 2 : 1;
  const int64_t x_off = b * a.x_b + s * a.x_s + h * a.x_h, y_off = b * a.y_b + s * a.y_s + h * a.y_h;
  const bf16* x[P];
  bf16* y[P];
  const bf16* weight[P];
  x[0] = a.x + x_off, y[0] = a.y + y_off, weight[0] = a.weight;
  if constexpr (PAIR) x[1] = a.x2 + x_off, y[1] = a.y2 + y_off, weight[1] = a.weight2;
  const int nvec = int(a.d / VEC);

  // x is the only load from DRAM; weight and the token's cos/sin row are read after the reduction, from L1/L2
  // (every head of the token and every row use them), which keeps registers — and so occupancy — low.
  Vec<bf16, VEC> xr[P][VPL];
#pragma unroll
  for (int p = 0; p < P; ++p)
#pragma unroll
    for (int i = 0; i < VPL; ++i) {
      const int c = lane + i * LANES;
      if (c < nvec) xr[p][i].load(x[p] + int64_t(c) * VEC);
    }
  float v[P][VPL][VEC];
  float r[P];
#pragma unroll
  for (int p = 0; p < P; ++p) {
    float ss = 0.0f;
#pragma unroll
    for (int i = 0; i < VPL; ++i) {
      const int c = lane + i * LANES;
      if (c < nvec) {
        xr[p][i].to_f32(v[p][i]);
#pragma unroll
        for (int j = 0; j < VEC; ++j) ss += v[p][i][j] * v[p][i][j];
      }
    }
    ss = group_sum<LANES>(ss, mask);
    r[p] = rsqrtf(ss / float(a.d) + a.eps);
  }

#pragma unroll
  for (int i = 0; i < VPL; ++i) {
    const int c = lane + i * LANES;
    if (c >= nvec) continue;
    float cs[VEC], sn[VEC];
    if constexpr (ROPE) {
      load_f32<VEC>(a.cos + s * a.cos_s + int64_t(c) * VEC, cs);
      load_f32<VEC>(a.sin + s * a.sin_s + int64_t(c) * VEC, sn);
    }
#pragma unroll
    for (int p = 0; p < P; ++p) {
      float w[VEC], n[VEC];
      load_f32<VEC>(weight[p] + int64_t(c) * VEC, w);
#pragma unroll
      for (int j = 0; j < VEC; ++j) n[j] = v[p][i][j] * r[p] * w[j];
      if constexpr (ROPE) {
        float out[VEC];
#pragma unroll
        for (int j = 0; j < VEC; j += 2) {
          const float e = n[j], o = n[j + 1];
          out[j] = e * cs[j] - o * sn[j];
          out[j + 1] = o * cs[j + 1] + e * sn[j + 1];
        }
        store_f32<VEC>(y[p] + int64_t(c) * VEC, out);
      } else {
        store_f32<VEC>(y[p] + int64_t(c) * VEC, n);
      }
    }
  }
}

// One block per row, any width: pass 1 sums the squares (VEC-wide loads, thread t takes vectors t, t + blockDim…),
// pass 2 re-reads, normalises and writes. In place is safe: every read of pass 1 precedes block_sum's barrier,
// and in pass 2 each thread writes only the vectors it has just read itself.
template <int VEC, bool ROPE>
__global__ void __launch_bounds__(512) rms_norm_rope_row_kernel(RopeArgs a) {
  __shared__ float scratch[32];
  const int64_t row = blockIdx.x;
  const int64_t h = row % a.H, t = row / a.H;
  const int64_t s = t % a.S, b = t / a.S;
  const bf16* x = a.x + b * a.x_b + s * a.x_s + h * a.x_h;
  const int64_t nvec = a.d / VEC;

  float ss = 0.0f;
  for (int64_t c = threadIdx.x; c < nvec; c += blockDim.x) {
    float v[VEC];
    load_f32<VEC>(x + c * VEC, v);
#pragma unroll
    for (int j = 0; j < VEC; ++j) ss += v[j] * v[j];
  }
  ss = block_sum(ss, scratch);
  const float r = rsqrtf(ss / float(a.d) + a.eps);

  bf16* y = a.y + b * a.y_b + s * a.y_s + h * a.y_h;
  for (int64_t c = threadIdx.x; c < nvec; c += blockDim.x) {
    float v[VEC], w[VEC], n[VEC];
    load_f32<VEC>(x + c * VEC, v);
    load_f32<VEC>(a.weight + c * VEC, w);
#pragma unroll
    for (int j = 0; j < VEC; ++j) n[j] = v[j] * r * w[j];
    if constexpr (ROPE) {
      float cs[VEC], sn[VEC], out[VEC];
      load_f32<VEC>(a.cos + s * a.cos_s + c * VEC, cs);
      load_f32<VEC>(a.sin + s * a.sin_s + c * VEC, sn);
#pragma unroll
      for (int j = 0; j < VEC; j += 2) {
        const float e = n[j], o = n[j + 1];
        out[j] = e * cs[j] - o * sn[j];
        out[j + 1] = o * cs[j + 1] + e * sn[j + 1];
      }
      store_f32<VEC>(y + c * VEC, out);
    } else {
      store_f32<VEC>(y + c * VEC, n);
    }
  }
}

template <int VEC, bool ROPE>
void launch_rows(const RopeArgs& a, cudaStream_t stream) {
  PD_REQUIRE(a.rows < (int64_t(1) << 31), "rms_norm_rope: ", a.rows, " rows is above the grid limit");
  const int64_t nvec = a.d / VEC;
  const unsigned threads = unsigned(std::min<int64_t>(512, (nvec + 31) / 32 * 32));
  rms_norm_rope_row_kernel<VEC, ROPE><<<unsigned(a.rows), threads, 0, stream>>>(a);
  PD_CUDA_CHECK_LAUNCH("rms_norm_rope_row_kernel");
}

template <int VEC, int LANES, bool ROPE>
void launch_lanes(const RopeArgs& a, int vpl, cudaStream_t stream) {
  constexpr int kRowsPerBlock = kThreads / LANES;
  const int64_t blocks = (a.rows + kRowsPerBlock - 1) / kRowsPerBlock;
  PD_REQUIRE(blocks < (int64_t(1) << 31), "rms_norm_rope: ", a.rows, " rows is above the grid limit");
  switch (vpl) {
    case 1: rms_norm_rope_kernel<VEC, LANES, 1, ROPE><<<unsigned(blocks), kThreads, 0, stream>>>(a); break;
    case 2: rms_norm_rope_kernel<VEC, LANES, 2, ROPE><<<unsigned(blocks), kThreads, 0, stream>>>(a); break;
    case 4: rms_norm_rope_kernel<VEC, LANES, 4, ROPE><<<unsigned(blocks), kThreads, 0, stream>>>(a); break;
    default: rms_norm_rope_kernel<VEC, LANES, 8, ROPE><<<unsigned(blocks), kThreads, 0, stream>>>(a); break;
  }
  PD_CUDA_CHECK_LAUNCH("rms_norm_rope_kernel");
}

template <bool ROPE>
void launch_rope(const RopeArgs& a, int vec, cudaStream_t stream) {
  const int64_t nvec = a.d / vec;
  int lanes = 32;
  if (vec == 8) {
    lanes = 8;
    while (lanes < 32 && lanes < nvec) lanes *= 2;
  }
  int vpl = 1;
  while (vpl < 8 && int64_t(vpl) * lanes < nvec) vpl *= 2;
  if (int64_t(vpl) * lanes < nvec) {  // wider than a warp's registers: a block per row
    if (vec == 8) return launch_rows<8, ROPE>(a, stream);
    if (vec == 2) return launch_rows<2, ROPE>(a, stream);
    if constexpr (!ROPE) return launch_rows<1, false>(a, stream);
    PD_THROW(kInternal, "rms_norm_rope: RoPE needs pairs in one lane");
  }
  if (vec == 8) {
    if (lanes == 8) return launch_lanes<8, 8, ROPE>(a, vpl, stream);
    if (lanes == 16) return launch_lanes<8, 16, ROPE>(a, vpl, stream);
    return launch_lanes<8, 32, ROPE>(a, vpl, stream);
  }
  if (vec == 2) return launch_lanes<2, 32, ROPE>(a, vpl, stream);
  if constexpr (!ROPE) return launch_lanes<1, 32, false>(a, vpl, stream);
  PD_THROW(kInternal, "rms_norm_rope: RoPE needs pairs in one lane");
}

bool aligned(const void* p, int bytes) { return reinterpret_cast<uintptr_t>(p) % uintptr_t(bytes) == 0; }

RopeArgs rope_args(const Tensor& y, const Tensor& x, const Tensor& weight, const Tensor& cos, const Tensor& sin,
                   float eps) {
  const bool rope = cos.defined();
  return RopeArgs{y.data_as<bf16>(),
                  x.data_as<bf16>(),
                  weight.data_as<bf16>(),
                  nullptr,
                  nullptr,
                  nullptr,
                  rope ? cos.data_as<float>() : nullptr,
                  rope ? sin.data_as<float>() : nullptr,
                  x.size(0) * x.size(1) * x.size(2),
                  x.size(1),
                  x.size(2),
                  x.size(3),
                  x.stride(0),
                  x.stride(1),
                  x.stride(2),
                  y.stride(0),
                  y.stride(1),
                  y.stride(2),
                  rope ? cos.stride(0) : 0,
                  rope ? sin.stride(0) : 0,
                  eps};
}

// Whether every operand allows vec-wide access: bf16 rows and weights at vec·2 bytes, cos/sin at min(16, vec·4).
bool fits(const RopeArgs& a, int vec) {
  const int64_t bf_align = vec * 2;
  if (a.d % vec != 0) return false;
  for (const void* p : {static_cast<const void*>(a.x), static_cast<const void*>(a.y),
                        static_cast<const void*>(a.weight), static_cast<const void*>(a.x2),
                        static_cast<const void*>(a.y2), static_cast<const void*>(a.weight2)})
    if (!aligned(p, int(bf_align))) return false;
  for (int64_t st : {a.x_b, a.x_s, a.x_h, a.y_b, a.y_s, a.y_h})
    if (st % vec != 0) return false;
  if (a.cos != nullptr) {
    const int f_align = vec * 4 > 16 ? 16 : vec * 4;
    if (!aligned(a.cos, f_align) || !aligned(a.sin, f_align)) return false;
    if ((a.cos_s * 4) % f_align != 0 || (a.sin_s * 4) % f_align != 0) return false;
  }
  return true;
}

}  // namespace

void launch_rms_norm_rope(const Tensor& y, const Tensor& x, const Tensor& weight, const Tensor& cos,
                          const Tensor& sin, float eps, cudaStream_t stream) {
  const RopeArgs a = rope_args(y, x, weight, cos, sin, eps);
  if (a.rows == 0 || a.d == 0) return;
  // Widest vector every operand allows.
  const int vec = fits(a, 8) ? 8 : fits(a, 2) ? 2 : 1;
  if (cos.defined()) {
    PD_REQUIRE(vec >= 2, "rms_norm_rope: RoPE needs an even head dim and 4-byte aligned rows (8-byte aligned cos/sin "
               "rows); got x ", x.desc(), ", cos ", cos.desc());
    launch_rope<true>(a, vec, stream);
  } else {
    launch_rope<false>(a, vec, stream);
  }
}

bool launch_qk_norm_rope(const Tensor& q, const Tensor& k, const Tensor& q_weight, const Tensor& k_weight,
                         const Tensor& cos, const Tensor& sin, float eps, cudaStream_t stream) {
  RopeArgs a = rope_args(q, q, q_weight, cos, sin, eps);
  a.y2 = k.data_as<bf16>(), a.x2 = k.data_as<bf16>(), a.weight2 = k_weight.data_as<bf16>();
  // A head in one group of 8, 16 or 32 lanes with a 16-byte vector each (d of 64, 128 or 256), k laid out as q.
  const int64_t lanes = a.d / 8;
  if (!cos.defined() || k.strides() != q.strides() || !fits(a, 8) || (lanes != 8 && lanes != 16 && lanes != 32))
    return false;
  if (a.rows == 0) return true;
  const int64_t blocks = (a.rows * lanes + kThreads - 1) / kThreads;  // kThreads / lanes rows a block
  PD_REQUIRE(blocks < (int64_t(1) << 31), "qk_norm_rope: ", a.rows, " rows is above the grid limit");
  if (lanes == 8) rms_norm_rope_kernel<8, 8, 1, true, true><<<unsigned(blocks), kThreads, 0, stream>>>(a);
  else if (lanes == 16) rms_norm_rope_kernel<8, 16, 1, true, true><<<unsigned(blocks), kThreads, 0, stream>>>(a);
  else rms_norm_rope_kernel<8, 32, 1, true, true><<<unsigned(blocks), kThreads, 0, stream>>>(a);
  PD_CUDA_CHECK_LAUNCH("rms_norm_rope_kernel (q and k)");
  return true;
}

}  // namespace paradit::cuda
