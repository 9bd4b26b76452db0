// Fused LayerNorm + adaLN modulation (and the affine LayerNorm of the text encoders): one block per row. The row
// is read once into registers (16-byte loads), mean and variance are two block reductions over those registers in
// f32 (two-pass, so no cancellation), and the modulated result is written once — one read and one write of x per
// call, the minimum. In place is safe: a row is entirely in registers before any of it is written.
// With a residual update first (x += gate ⊙ delta, the gated add closing the previous block half), the updated row
// is rounded to bf16 and written back exactly as the gated_add kernel would, and the statistics are taken from
// those rounded values: the same bits as the two ops in sequence, one pass over x fewer.
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/layer_norm.h"
#include "backend/cuda/vec.cuh"

namespace paradit::cuda {
namespace {

// What follows the normalisation: nothing, adaLN's (1 + scale)·x̂ + shift, or the affine weight·x̂ (+ bias).
enum LnMode : int { kLnPlain = 0, kLnModulate = 1, kLnAffine = 2, kLnAffineBias = 3 };

struct LnArgs {
  bf16* y;
  bf16* x;  // written only with a residual update
  const bf16* shift;  // kLnModulate
  const bf16* scale;
  const bf16* weight;  // kLnAffine, kLnAffineBias
  const bf16* bias;    // kLnAffineBias
  int64_t S, D;
  int64_t x_b, x_s, y_b, y_s, shift_b, scale_b;  // strides in elements
  float eps;
  const bf16* delta = nullptr;  // residual update (RESID): x += gate ⊙ delta first
  const bf16* gate = nullptr;
  int64_t delta_b = 0, delta_s = 0, gate_b = 0;
};

// Each thread holds up to VPT vectors of VEC elements (vector c of the row goes to thread c % blockDim.x), kept
// as raw bf16 and converted again in each pass: half the registers of an f32 copy, so more blocks fit on an SM
// and more loads are in flight — this kernel is bound by memory latency, not arithmetic. shift/scale are read
// after the statistics: they are rows of a small [B, 6D] buffer that every row of the batch shares (L2 hits).
template <int VEC, int VPT, int MODE, bool RESID>
__global__ void __launch_bounds__(1024) layer_norm_modulate_kernel(LnArgs a) {
  constexpr bool MOD = MODE == kLnModulate;
  __shared__ float scratch[32];
  const int64_t row = blockIdx.x;
  const int64_t b = row / a.S, s = row % a.S;
  bf16* x = a.x + b * a.x_b + s * a.x_s;
  const int nvec = int(a.D / VEC);

  Vec<bf16, VEC> xr[VPT];
#pragma unroll
  for (int i = 0; i < VPT; ++i) {
    const int c = threadIdx.x + i * blockDim.x;
    if (c < nvec) xr[i].load(x + int64_t(c) * VEC);
  }
  if constexpr (RESID) {
    const bf16* delta = a.delta + b * a.delta_b + s * a.delta_s;
    const bf16* gate = a.gate + b * a.gate_b;
#pragma unroll
    for (int i = 0; i < VPT; ++i) {
      const int c = threadIdx.x + i * blockDim.x;
      if (c < nvec) {
        float v[VEC], d[VEC], g[VEC];
        xr[i].to_f32(v);
        load_f32<VEC>(delta + int64_t(c) * VEC, d);
        load_f32<VEC>(gate + int64_t(c) * VEC, g);
#pragma unroll
        for (int j = 0; j < VEC; ++j) v[j] = fmaf(g[j], d[j], v[j]);
        xr[i].from_f32(v);  // rounded to bf16: the statistics see what is stored
        xr[i].store(x + int64_t(c) * VEC);
      }
    }
  }

  float sum = 0.0f;
#pragma unroll
  for (int i = 0; i < VPT; ++i) {
    const int c = threadIdx.x + i * blockDim.x;
    if (c < nvec) {
      float v[VEC];
      xr[i].to_f32(v);
#pragma unroll
      for (int j = 0; j < VEC; ++j) sum += v[j];
    }
  }
  const float inv_d = 1.0f / float(a.D);
  const float mean = block_sum(sum, scratch) * inv_d;
  float sq = 0.0f;
#pragma unroll
  for (int i = 0; i < VPT; ++i) {
    const int c = threadIdx.x + i * blockDim.x;
    if (c < nvec) {
      float v[VEC];
      xr[i].to_f32(v);
#pragma unroll
      for (int j = 0; j < VEC; ++j) sq += (v[j] - mean) * (v[j] - mean);
    }
  }
  const float rstd = rsqrtf(block_sum(sq, scratch) * inv_d + a.eps);

  bf16* y = a.y + b * a.y_b + s * a.y_s;
  const bf16* shift = MOD ? a.shift + b * a.shift_b : nullptr;
  const bf16* scale = MOD ? a.scale + b * a.scale_b : nullptr;
#pragma unroll
  for (int i = 0; i < VPT; ++i) {
    const int c = threadIdx.x + i * blockDim.x;
    if (c < nvec) {
      float out[VEC];
      xr[i].to_f32(out);
#pragma unroll
      for (int j = 0; j < VEC; ++j) out[j] = (out[j] - mean) * rstd;
      if constexpr (MOD) {
        float sh[VEC], sc[VEC];
        load_f32<VEC>(shift + int64_t(c) * VEC, sh);
        load_f32<VEC>(scale + int64_t(c) * VEC, sc);
#pragma unroll
        for (int j = 0; j < VEC; ++j) out[j] = fmaf(out[j], 1.0f + sc[j], sh[j]);
      } else if constexpr (MODE == kLnAffine || MODE == kLnAffineBias) {
        float w[VEC];
        load_f32<VEC>(a.weight + int64_t(c) * VEC, w);
        if constexpr (MODE == kLnAffineBias) {
          float bi[VEC];
          load_f32<VEC>(a.bias + int64_t(c) * VEC, bi);
#pragma unroll
          for (int j = 0; j < VEC; ++j) out[j] = fmaf(out[j], w[j], bi[j]);
        } else {
#pragma unroll
          for (int j = 0; j < VEC; ++j) out[j] *= w[j];
        }
      }
      store_f32<VEC>(y + int64_t(c) * VEC, out);
    }
  }
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

template <int VEC, int MODE, bool RESID = false>
void launch_vec(const char* op, const LnArgs& a, int64_t rows, cudaStream_t stream) {
  const int64_t nvec = a.D / VEC;
  // Fewest vectors per thread that keep the block at ≤ 256 threads (≤ 1024 for very wide rows).
  int vpt = 1;
  while (vpt < 16 && (nvec + vpt - 1) / vpt > 256) vpt *= 2;
  const int64_t threads_needed = (nvec + vpt - 1) / vpt;
  if (threads_needed > 1024)
    PD_THROW(kUnimplemented, op, ": rows of ", a.D, " elements are wider than this kernel supports (",
             1024 * 16 * VEC, ")");
  const unsigned threads = unsigned((threads_needed + 31) / 32 * 32);
  const unsigned blocks = unsigned(rows);
  switch (vpt) {
    case 1: layer_norm_modulate_kernel<VEC, 1, MODE, RESID><<<blocks, threads, 0, stream>>>(a); break;
    case 2: layer_norm_modulate_kernel<VEC, 2, MODE, RESID><<<blocks, threads, 0, stream>>>(a); break;
    case 4: layer_norm_modulate_kernel<VEC, 4, MODE, RESID><<<blocks, threads, 0, stream>>>(a); break;
    case 8: layer_norm_modulate_kernel<VEC, 8, MODE, RESID><<<blocks, threads, 0, stream>>>(a); break;
    default: layer_norm_modulate_kernel<VEC, 16, MODE, RESID><<<blocks, threads, 0, stream>>>(a); break;
  }
  PD_CUDA_CHECK_LAUNCH("layer_norm_modulate_kernel");
}

}  // namespace

void launch_layer_norm_modulate(const Tensor& y, const Tensor& x, const Tensor& shift, const Tensor& scale,
                                float eps, cudaStream_t stream, const Tensor& delta, const Tensor& gate) {
  const int64_t B = x.size(0), S = x.size(1), D = x.size(2);
  if (B * S == 0 || D == 0) return;
  PD_REQUIRE(B * S < (int64_t(1) << 31), "layer_norm_modulate: ", B * S, " rows is above the grid limit");
  const bool mod = shift.defined();
  LnArgs a{y.data_as<bf16>(),
           const_cast<bf16*>(x.data_as<bf16>()),
           mod ? shift.data_as<bf16>() : nullptr,
           mod ? scale.data_as<bf16>() : nullptr,
           nullptr,
           nullptr,
           S,
           D,
           x.stride(0),
           x.stride(1),
           y.stride(0),
           y.stride(1),
           mod ? shift.stride(0) : 0,
           mod ? scale.stride(0) : 0,
           eps};
  bool vec8 = D % 8 == 0 && aligned16(a.x) && aligned16(a.y) && a.x_b % 8 == 0 && a.x_s % 8 == 0 &&
              a.y_b % 8 == 0 && a.y_s % 8 == 0;
  if (mod) vec8 = vec8 && aligned16(a.shift) && aligned16(a.scale) && a.shift_b % 8 == 0 && a.scale_b % 8 == 0;
  if (delta.defined()) {
    const char* op = "gated_add_layer_norm_modulate";
    a.delta = delta.data_as<bf16>();
    a.gate = gate.data_as<bf16>();
    a.delta_b = delta.stride(0);
    a.delta_s = delta.stride(1);
    a.gate_b = gate.stride(0);
    vec8 = vec8 && aligned16(a.delta) && aligned16(a.gate) && a.delta_b % 8 == 0 && a.delta_s % 8 == 0 &&
           a.gate_b % 8 == 0;
    vec8 ? launch_vec<8, kLnModulate, true>(op, a, B * S, stream)
         : launch_vec<1, kLnModulate, true>(op, a, B * S, stream);
    return;
  }
  const char* op = "layer_norm_modulate";
  if (vec8)
    mod ? launch_vec<8, kLnModulate>(op, a, B * S, stream) : launch_vec<8, kLnPlain>(op, a, B * S, stream);
  else
    mod ? launch_vec<1, kLnModulate>(op, a, B * S, stream) : launch_vec<1, kLnPlain>(op, a, B * S, stream);
}

void launch_layer_norm(const Tensor& y, const Tensor& x, const Tensor& weight, const Tensor& bias, float eps,
                       cudaStream_t stream) {
  const char* op = "layer_norm";
  const int64_t D = x.size(-1);
  // The leading dimensions of x and y, merged where both are contiguous across them, must come down to two
  // (rows = b·S + s): every layout the models use ([B, S, D], [M, D], [D]) does.
  int64_t size[2] = {1, 1}, xs[2] = {0, 0}, ys[2] = {0, 0};
  int n = 0;
  for (int d = 0; d + 1 < x.dim(); ++d) {
    const int64_t sz = x.size(d);
    if (sz == 1) continue;
    if (n > 0 && xs[n - 1] == x.stride(d) * sz && ys[n - 1] == y.stride(d) * sz) {
      size[n - 1] *= sz;
      xs[n - 1] = x.stride(d);
      ys[n - 1] = y.stride(d);
      continue;
    }
    PD_REQUIRE(n < 2, op, ": x ", x.desc(), " strides ", shape_str(x.strides()), " and y strides ",
               shape_str(y.strides()), " have more than two non-mergeable leading dimensions");
    size[n] = sz;
    xs[n] = x.stride(d);
    ys[n] = y.stride(d);
    ++n;
  }
  if (n == 1) {  // one leading dimension: it is S, with B = 1
    size[1] = size[0], xs[1] = xs[0], ys[1] = ys[0];
    size[0] = 1, xs[0] = 0, ys[0] = 0;
  }
  const int64_t B = size[0], S = size[1];
  if (B * S == 0 || D == 0) return;
  PD_REQUIRE(B * S < (int64_t(1) << 31), op, ": ", B * S, " rows is above the grid limit");
  const bool has_bias = bias.defined();
  LnArgs a{y.data_as<bf16>(),
           const_cast<bf16*>(x.data_as<bf16>()),
           nullptr,
           nullptr,
           weight.data_as<bf16>(),
           has_bias ? bias.data_as<bf16>() : nullptr,
           S,
           D,
           xs[0],
           xs[1],
           ys[0],
           ys[1],
           0,
           0,
           eps};
  bool vec8 = D % 8 == 0 && aligned16(a.x) && aligned16(a.y) && aligned16(a.weight) && a.x_b % 8 == 0 &&
              a.x_s % 8 == 0 && a.y_b % 8 == 0 && a.y_s % 8 == 0;
  if (has_bias) vec8 = vec8 && aligned16(a.bias);
  if (vec8)
    has_bias ? launch_vec<8, kLnAffineBias>(op, a, B * S, stream) : launch_vec<8, kLnAffine>(op, a, B * S, stream);
  else
    has_bias ? launch_vec<1, kLnAffineBias>(op, a, B * S, stream) : launch_vec<1, kLnAffine>(op, a, B * S, stream);
}

}  // namespace paradit::cuda
