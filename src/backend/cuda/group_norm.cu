// GroupNorm over NHWC images in two passes over x, deterministic (no atomics, fixed reduction orders):
//
//  1. stats: a block per (chunk of pixels, batch entry). Its threads form a TX × TY grid: tx picks a vector of
//     V channels (16 bytes when the layout allows; a vector never straddles two groups), ty a pixel row of the
//     chunk, so a warp reads consecutive vectors of a pixel. Each thread sums x − shift and (x − shift)² in f32
//     over its pixels, shift being the group's first value in the image (x[b, 0, 0, g·Cg]): shifting by a
//     sample of the group keeps E[(x−K)²] − E[x−K]² free of the cancellation that raw sums suffer when
//     |mean| ≫ std. The TY partial sums of a vector are added in order and stored per (batch, chunk, vector).
//  2. finalize: a block per (group, batch) adds its chunks' and vectors' partials in double (a fixed strided
//     order, then a tree), and folds mean, rstd, weight and bias into per-channel coefficients (a, c).
//  3. apply: y = a·x + c, then SiLU, V channels per thread with 16-byte accesses. y may be x: each element is
//     read and then written by the same thread, after the statistics are complete.
#include <algorithm>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/group_norm.h"
#include "backend/cuda/scratch.h"
#include "backend/cuda/vec.cuh"

namespace paradit::cuda {
namespace {

constexpr int kThreads = 256;

struct GnArgs {
  const bf16* x;
  bf16* y;
  const bf16* weight;
  const bf16* bias;
  int64_t HW, W, C, Cg;
  int64_t xb, xh, xw, yb, yh, yw;  // element strides
  int64_t nv;                      // channel vectors per pixel (C / V)
  int64_t chunk_pixels, nchunks;
  float eps;
  float2* partial;  // [B, nchunks, nv]: (Σ(x − shift), Σ(x − shift)²) per chunk and channel vector
  float2* coef;     // [B, C]: y = coef.x·x + coef.y (before SiLU)
};

// Grid (nchunks, B); blockDim.x = tx_n·ty_n ≤ kThreads.
template <int V>
__global__ void __launch_bounds__(kThreads) group_norm_stats_kernel(GnArgs a, int tx_n, int ty_n) {
  __shared__ float2 red[kThreads];
  const int tx = int(threadIdx.x) % tx_n, ty = int(threadIdx.x) / tx_n;
  const int64_t b = blockIdx.y, chunk = blockIdx.x;
  const int p0 = int(chunk * a.chunk_pixels);
  const int p1 = int(min(a.HW, chunk * a.chunk_pixels + a.chunk_pixels));
  const int W = int(a.W);
  const bf16* xb = a.x + b * a.xb;
  for (int64_t cv0 = 0; cv0 < a.nv; cv0 += tx_n) {
    const int64_t cv = cv0 + tx;
    float s1 = 0.0f, s2 = 0.0f;
    if (cv < a.nv) {
      const int64_t g = cv * V / a.Cg;
      const float shift = __bfloat162float(xb[g * a.Cg]);
      for (int p = p0 + ty; p < p1; p += ty_n) {
        const int hh = p / W, ww = p - hh * W;
        float v[V];
        load_f32<V>(xb + int64_t(hh) * a.xh + int64_t(ww) * a.xw + cv * V, v);
#pragma unroll
        for (int j = 0; j < V; ++j) {
          const float d = v[j] - shift;
          s1 += d;
          s2 = fmaf(d, d, s2);
        }
      }
    }
    red[threadIdx.x] = make_float2(s1, s2);
    __syncthreads();
    if (ty == 0 && cv < a.nv) {
      float t1 = 0.0f, t2 = 0.0f;
      for (int k = 0; k < ty_n; ++k) {
        const float2 r = red[k * tx_n + tx];
        t1 += r.x;
        t2 += r.y;
      }
      a.partial[(b * a.nchunks + chunk) * a.nv + cv] = make_float2(t1, t2);
    }
    __syncthreads();
  }
}

// Grid (groups, B), kThreads threads (a power of two).
__global__ void __launch_bounds__(kThreads) group_norm_finalize_kernel(GnArgs a, int V) {
  __shared__ double r1[kThreads], r2[kThreads];
  __shared__ float stat[2];
  const int tid = int(threadIdx.x);
  const int64_t g = blockIdx.x, b = blockIdx.y;
  const int64_t cpg = a.Cg / V;  // channel vectors per group
  const int64_t count = a.nchunks * cpg;
  double s1 = 0.0, s2 = 0.0;
  for (int64_t i = tid; i < count; i += kThreads) {
    const int64_t chunk = i / cpg, cv = g * cpg + i % cpg;
    const float2 p = a.partial[(b * a.nchunks + chunk) * a.nv + cv];
    s1 += double(p.x);
    s2 += double(p.y);
  }
  r1[tid] = s1;
  r2[tid] = s2;
  __syncthreads();
  for (int off = kThreads / 2; off > 0; off /= 2) {
    if (tid < off) {
      r1[tid] += r1[tid + off];
      r2[tid] += r2[tid + off];
    }
    __syncthreads();
  }
  if (tid == 0) {
    const double n = double(a.HW) * double(a.Cg);
    const double m1 = r1[0] / n;  // mean of x − shift
    const double var = fmax(r2[0] / n - m1 * m1, 0.0);
    const double shift = double(__bfloat162float(a.x[b * a.xb + g * a.Cg]));
    stat[0] = float(shift + m1);
    stat[1] = float(1.0 / sqrt(var + double(a.eps)));
  }
  __syncthreads();
  const float mean = stat[0], rstd = stat[1];
  for (int64_t c = g * a.Cg + tid; c < (g + 1) * a.Cg; c += kThreads) {
    const float sc = rstd * __bfloat162float(a.weight[c]);
    a.coef[b * a.C + c] = make_float2(sc, __bfloat162float(a.bias[c]) - mean * sc);
  }
}

template <int V, bool SILU, typename Index>
__global__ void __launch_bounds__(kThreads) group_norm_apply_kernel(GnArgs a, Index n) {
  const Index step = Index(gridDim.x) * Index(blockDim.x);
  const Index nv = Index(a.nv), HW = Index(a.HW), W = Index(a.W);
  for (Index i = Index(blockIdx.x) * Index(blockDim.x) + Index(threadIdx.x); i < n; i += step) {
    const Index cv = i % nv;
    const Index t = i / nv;
    const Index p = t % HW, b = t / HW;
    const Index hh = p / W, ww = p % W;
    float v[V];
    load_f32<V>(a.x + int64_t(b) * a.xb + int64_t(hh) * a.xh + int64_t(ww) * a.xw + int64_t(cv) * V, v);
    const float2* cf = a.coef + int64_t(b) * a.C + int64_t(cv) * V;
#pragma unroll
    for (int j = 0; j < V; ++j) {
      const float2 k = cf[j];
      float o = fmaf(v[j], k.x, k.y);
      if constexpr (SILU) o = o / (1.0f + __expf(-o));  // a large negative o gives −0, as on the CPU
      v[j] = o;
    }
    store_f32<V>(a.y + int64_t(b) * a.yb + int64_t(hh) * a.yh + int64_t(ww) * a.yw + int64_t(cv) * V, v);
  }
}

template <int V>
void run(GnArgs a, int64_t B, int64_t G, bool silu, Allocator& alloc, cudaStream_t stream) {
  a.nv = a.C / V;
  const int tx_n = int(std::min<int64_t>(a.nv, kThreads));
  const int ty_n = kThreads / tx_n;
  // About 1024 blocks in all (several waves on any GPU), each thread over at least 16 pixels.
  const int64_t chunks_per_image = std::max<int64_t>(1, 1024 / B);
  int64_t cp = (a.HW + chunks_per_image - 1) / chunks_per_image;
  cp = std::max<int64_t>(cp, 16 * int64_t(ty_n));
  cp = (cp + ty_n - 1) / ty_n * ty_n;
  a.chunk_pixels = cp;
  a.nchunks = (a.HW + cp - 1) / cp;

  Scratch partial(alloc, size_t(B * a.nchunks * a.nv) * sizeof(float2));
  Scratch coef(alloc, size_t(B * a.C) * sizeof(float2));
  a.partial = partial.as<float2>();
  a.coef = coef.as<float2>();

  group_norm_stats_kernel<V>
      <<<dim3(unsigned(a.nchunks), unsigned(B)), unsigned(tx_n * ty_n), 0, stream>>>(a, tx_n, ty_n);
  PD_CUDA_CHECK_LAUNCH("group_norm_stats_kernel");
  group_norm_finalize_kernel<<<dim3(unsigned(G), unsigned(B)), kThreads, 0, stream>>>(a, V);
  PD_CUDA_CHECK_LAUNCH("group_norm_finalize_kernel");

  const int64_t n = B * a.HW * a.nv;
  const int64_t blocks = std::min<int64_t>((n + kThreads - 1) / kThreads, int64_t(1) << 20);
  const bool small = n < (int64_t(1) << 31);
  if (silu) {
    if (small)
      group_norm_apply_kernel<V, true, uint32_t><<<unsigned(blocks), kThreads, 0, stream>>>(a, uint32_t(n));
    else
      group_norm_apply_kernel<V, true, int64_t><<<unsigned(blocks), kThreads, 0, stream>>>(a, n);
  } else {
    if (small)
      group_norm_apply_kernel<V, false, uint32_t><<<unsigned(blocks), kThreads, 0, stream>>>(a, uint32_t(n));
    else
      group_norm_apply_kernel<V, false, int64_t><<<unsigned(blocks), kThreads, 0, stream>>>(a, n);
  }
  PD_CUDA_CHECK_LAUNCH("group_norm_apply_kernel");
}

bool aligned(const void* p, int bytes) { return reinterpret_cast<uintptr_t>(p) % uintptr_t(bytes) == 0; }

}  // namespace

void launch_group_norm(const Tensor& y, const Tensor& x, const Tensor& weight, const Tensor& bias, int groups,
                       float eps, bool silu, Allocator& alloc, cudaStream_t stream) {
  const int64_t B = x.size(0), H = x.size(1), W = x.size(2), C = x.size(3), G = groups;
  if (B * H * W * C == 0) return;
  PD_REQUIRE(H * W < (int64_t(1) << 31), "group_norm: ", H, "×", W, " pixels per image is above 2³¹");
  PD_REQUIRE(B <= 65535, "group_norm: batch ", B, " is above the grid limit of 65535");
  GnArgs a{};
  a.x = x.data_as<bf16>();
  a.y = y.data_as<bf16>();
  a.weight = weight.data_as<bf16>();
  a.bias = bias.data_as<bf16>();
  a.HW = H * W;
  a.W = W;
  a.C = C;
  a.Cg = C / G;
  a.xb = x.stride(0), a.xh = x.stride(1), a.xw = x.stride(2);
  a.yb = y.stride(0), a.yh = y.stride(1), a.yw = y.stride(2);
  a.eps = eps;
  // Widest vector (≤ 16 bytes) that divides the group width and every address and used stride.
  const auto fits = [&](int v) {
    if (a.Cg % v != 0 || !aligned(a.x, 2 * v) || !aligned(a.y, 2 * v)) return false;
    const int64_t sizes[3] = {B, H, W};
    const int64_t xs[3] = {a.xb, a.xh, a.xw}, ys[3] = {a.yb, a.yh, a.yw};
    for (int d = 0; d < 3; ++d)
      if (sizes[d] > 1 && (xs[d] % v != 0 || ys[d] % v != 0)) return false;
    return true;
  };
  if (fits(8)) return run<8>(a, B, G, silu, alloc, stream);
  if (fits(4)) return run<4>(a, B, G, silu, alloc, stream);
  if (fits(2)) return run<2>(a, B, G, silu, alloc, stream);
  run<1>(a, B, G, silu, alloc, stream);
}

}  // namespace paradit::cuda
