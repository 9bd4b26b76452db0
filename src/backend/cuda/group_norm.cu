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
//
// The split GroupNorm of an image cut over ranks reuses these kernels: group_norm_sums is pass 1 about a given
// per-group shift (or 0) with finalize writing the f32 sums instead of coefficients; group_norm_apply turns
// given sums into the coefficients (a small kernel per (group, batch)) and runs pass 3.
#include <algorithm>
#include <type_traits>

#include "backend/cuda/copy.h"
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
  // The shift of pass 1: the group's first value in the image when shift_first, else shift[b, g] (element
  // strides shb, shg) or 0 when shift is null.
  bool shift_first;
  const float* shift;
  int64_t shb, shg;
  // When set, finalize writes (Σ₁, Σ₂) per (b, g) here (element strides s0 between the two planes, sb, sg)
  // instead of coefficients.
  float* sums;
  int64_t s0, sb, sg;
};

__device__ __forceinline__ float group_shift(const GnArgs& a, int64_t b, int64_t g) {
  if (a.shift_first) return __bfloat162float(a.x[b * a.xb + g * a.Cg]);
  return a.shift ? a.shift[b * a.shb + g * a.shg] : 0.0f;
}

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
      const float shift = group_shift(a, b, cv * V / a.Cg);
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
  if (a.sums) {
    if (tid == 0) {
      a.sums[b * a.sb + g * a.sg] = float(r1[0]);
      a.sums[a.s0 + b * a.sb + g * a.sg] = float(r2[0]);
    }
    return;
  }
  if (tid == 0) {
    const double n = double(a.HW) * double(a.Cg);
    const double m1 = r1[0] / n;  // mean of x − shift
    const double var = fmax(r2[0] / n - m1 * m1, 0.0);
    stat[0] = float(double(group_shift(a, b, g)) + m1);
    stat[1] = float(1.0 / sqrt(var + double(a.eps)));
  }
  __syncthreads();
  const float mean = stat[0], rstd = stat[1];
  for (int64_t c = g * a.Cg + tid; c < (g + 1) * a.Cg; c += kThreads) {
    const float sc = rstd * __bfloat162float(a.weight[c]);
    a.coef[b * a.C + c] = make_float2(sc, __bfloat162float(a.bias[c]) - mean * sc);
  }
}

// Grid (groups, B): coefficients from given sums about the shift, `count` elements per group.
__global__ void __launch_bounds__(kThreads)
    group_norm_coef_kernel(GnArgs a, const float* sums, int64_t s0, int64_t sb, int64_t sg, double count) {
  const int64_t g = blockIdx.x, b = blockIdx.y;
  const double m1 = double(sums[b * sb + g * sg]) / count;
  const double m2 = double(sums[s0 + b * sb + g * sg]) / count;
  const float mean = float(double(group_shift(a, b, g)) + m1);
  const float rstd = float(1.0 / sqrt(fmax(m2 - m1 * m1, 0.0) + double(a.eps)));
  for (int64_t c = g * a.Cg + threadIdx.x; c < (g + 1) * a.Cg; c += kThreads) {
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

// Passes 1 and 2: partial sums per chunk, then per (group, batch) either coefficients into a.coef or, when
// a.sums is set, the sums themselves. a.nv must be set.
template <int V>
void stats(GnArgs a, int64_t B, int64_t G, Allocator& alloc, cudaStream_t stream) {
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
  a.partial = partial.as<float2>();
  group_norm_stats_kernel<V>
      <<<dim3(unsigned(a.nchunks), unsigned(B)), unsigned(tx_n * ty_n), 0, stream>>>(a, tx_n, ty_n);
  PD_CUDA_CHECK_LAUNCH("group_norm_stats_kernel");
  group_norm_finalize_kernel<<<dim3(unsigned(G), unsigned(B)), kThreads, 0, stream>>>(a, V);
  PD_CUDA_CHECK_LAUNCH("group_norm_finalize_kernel");
}

// Pass 3 with the coefficients in a.coef. a.nv must be set.
template <int V>
void apply(const GnArgs& a, int64_t B, bool silu, cudaStream_t stream) {
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

// Widest vector (≤ 16 bytes) that divides the group width and every address and used stride of x and y
// (y may be undefined).
int vector_width(const Tensor& x, const Tensor& y, int64_t Cg) {
  const auto fits = [&](int v) {
    if (Cg % v != 0) return false;
    for (const Tensor* t : {&x, &y}) {
      if (!t->defined()) continue;
      if (!aligned(t->data(), 2 * v)) return false;
      for (int d = 0; d < 3; ++d)
        if (t->size(d) > 1 && t->stride(d) % v != 0) return false;
    }
    return true;
  };
  for (int v : {8, 4, 2})
    if (fits(v)) return v;
  return 1;
}

// Calls f(std::integral_constant<int, v>) for v in {8, 4, 2, 1}.
template <typename F>
void with_width(int v, F&& f) {
  switch (v) {
    case 8: return f(std::integral_constant<int, 8>{});
    case 4: return f(std::integral_constant<int, 4>{});
    case 2: return f(std::integral_constant<int, 2>{});
    default: return f(std::integral_constant<int, 1>{});
  }
}

// The arguments every launcher fills from x (and y, weight, bias when given).
GnArgs make_args(const Tensor& y, const Tensor& x, const Tensor& weight, const Tensor& bias, int groups, float eps) {
  const int64_t H = x.size(1), W = x.size(2), C = x.size(3);
  PD_REQUIRE(H * W < (int64_t(1) << 31), "group_norm: ", H, "×", W, " pixels per image is above 2³¹");
  PD_REQUIRE(x.size(0) <= 65535, "group_norm: batch ", x.size(0), " is above the grid limit of 65535");
  GnArgs a{};
  a.x = x.data_as<bf16>();
  a.HW = H * W;
  a.W = W;
  a.C = C;
  a.Cg = C / groups;
  a.xb = x.stride(0), a.xh = x.stride(1), a.xw = x.stride(2);
  if (y.defined()) {
    a.y = y.data_as<bf16>();
    a.yb = y.stride(0), a.yh = y.stride(1), a.yw = y.stride(2);
    a.weight = weight.data_as<bf16>();
    a.bias = bias.data_as<bf16>();
  }
  a.eps = eps;
  a.nv = C / vector_width(x, y, a.Cg);
  return a;
}

void set_shift(GnArgs& a, const Tensor& shift) {
  if (!shift.defined()) return;
  a.shift = shift.data_as<float>();
  a.shb = shift.stride(0);
  a.shg = shift.stride(1);
}

}  // namespace

void launch_group_norm(const Tensor& y, const Tensor& x, const Tensor& weight, const Tensor& bias, int groups,
                       float eps, bool silu, Allocator& alloc, cudaStream_t stream) {
  const int64_t B = x.size(0);
  if (x.numel() == 0) return;
  GnArgs a = make_args(y, x, weight, bias, groups, eps);
  a.shift_first = true;
  Scratch coef(alloc, size_t(B * a.C) * sizeof(float2));
  a.coef = coef.as<float2>();
  with_width(int(a.C / a.nv), [&](auto v) {
    stats<decltype(v)::value>(a, B, groups, alloc, stream);
    apply<decltype(v)::value>(a, B, silu, stream);
  });
}

void launch_group_norm_sums(const Tensor& sums, const Tensor& x, int groups, const Tensor& shift, Allocator& alloc,
                            cudaStream_t stream) {
  if (x.numel() == 0) {  // an empty band adds nothing
    launch_fill(sums, 0.0f, stream);
    return;
  }
  GnArgs a = make_args(Tensor(), x, Tensor(), Tensor(), groups, 0.0f);
  set_shift(a, shift);
  a.sums = sums.data_as<float>();
  a.s0 = sums.stride(0), a.sb = sums.stride(1), a.sg = sums.stride(2);
  with_width(int(a.C / a.nv), [&](auto v) { stats<decltype(v)::value>(a, x.size(0), groups, alloc, stream); });
}

void launch_group_norm_apply(const Tensor& y, const Tensor& x, const Tensor& sums, const Tensor& shift, double count,
                             const Tensor& weight, const Tensor& bias, int groups, float eps, bool silu,
                             Allocator& alloc, cudaStream_t stream) {
  const int64_t B = x.size(0);
  if (x.numel() == 0) return;
  GnArgs a = make_args(y, x, weight, bias, groups, eps);
  set_shift(a, shift);
  Scratch coef(alloc, size_t(B * a.C) * sizeof(float2));
  a.coef = coef.as<float2>();
  group_norm_coef_kernel<<<dim3(unsigned(groups), unsigned(B)), kThreads, 0, stream>>>(
      a, sums.data_as<float>(), sums.stride(0), sums.stride(1), sums.stride(2), count);
  PD_CUDA_CHECK_LAUNCH("group_norm_coef_kernel");
  with_width(int(a.C / a.nv), [&](auto v) { apply<decltype(v)::value>(a, B, silu, stream); });
}

}  // namespace paradit::cuda
