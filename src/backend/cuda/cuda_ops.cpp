// The compute ops of the CUDA backend: argument validation (op name and shapes in every message), then the
// launcher or library call. Nothing here waits for the GPU.
#include <algorithm>
#include <limits>

#include "backend/cuda/cuda_backend_impl.h"
#include "backend/cuda/copy.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/elementwise.h"
#include "backend/cuda/layer_norm.h"
#include "backend/cuda/rms_norm_rope.h"

namespace paradit {
namespace {

void require_dtype(const char* op, const char* name, const Tensor& t, DType dt) {
  PD_REQUIRE(t.dtype() == dt, op, ": ", name, " ", t.desc(), " must be ", dtype_name(dt));
}

// The layout convention: the last dimension is contiguous (a size-1 last dimension has any stride).
void require_rows(const char* op, const char* name, const Tensor& t) {
  PD_REQUIRE(t.dim() >= 1, op, ": ", name, " ", t.desc(), " must have at least one dimension");
  PD_REQUIRE(t.size(-1) <= 1 || t.stride(-1) == 1, op, ": ", name, " ", t.desc(), " strides ",
             shape_str(t.strides()), ": the last dimension must be contiguous");
}

void require_shape(const char* op, const char* name, const Tensor& t, const Shape& want) {
  PD_REQUIRE(t.shape() == want, op, ": ", name, " ", t.desc(), " must have shape ", shape_str(want));
}

// Row stride of a [rows, width] matrix as cuBLASLt takes it: any value ≥ width works when there is one row.
int64_t leading_dim(int64_t stride, int64_t rows, int64_t width) { return rows <= 1 ? std::max(stride, width) : stride; }

}  // namespace

void CudaBackendImpl::linear(const Tensor& y, const Tensor& x, const Tensor& w, const Tensor& bias, Epilogue ep) {
  const char* op = "linear";
  for (auto [name, t] : {std::pair{"y", &y}, std::pair{"x", &x}, std::pair{"w", &w}}) {
    require_here(op, name, *t);
    require_dtype(op, name, *t, DType::kBF16);
    require_rows(op, name, *t);
  }
  PD_REQUIRE(x.dim() == 2 || x.dim() == 3, op, ": x ", x.desc(), " must be [B, S, K] or [M, K]");
  PD_REQUIRE(w.dim() == 2 && w.is_contiguous(), op, ": w ", w.desc(), " must be a contiguous [N, K]");
  const int64_t N = w.size(0), K = w.size(1);
  PD_REQUIRE(x.size(-1) == K, op, ": x ", x.desc(), " has K = ", x.size(-1), " but w ", w.desc(), " has K = ", K);
  Shape y_shape = x.shape();
  y_shape.back() = N;
  require_shape(op, "y", y, y_shape);
  if (bias.defined()) {
    require_here(op, "bias", bias);
    require_dtype(op, "bias", bias, DType::kBF16);
    PD_REQUIRE(bias.dim() == 1 && bias.size(0) == N && (N <= 1 || bias.stride(0) == 1), op, ": bias ", bias.desc(),
               " must be a contiguous [", N, "]");
  }
  if (y.numel() == 0) return;
  PD_REQUIRE(K > 0, op, ": K = 0 (x ", x.desc(), ", w ", w.desc(), ")");

  cuda::GemmProblem p;
  p.n = N;
  p.k = K;
  if (x.dim() == 2 || x.size(1) == 1) {
    // One matrix of M rows ([M, K], or [B, 1, K] whose rows are the batch).
    p.rows = x.size(0);
    p.ldx = leading_dim(x.stride(0), p.rows, K);
    p.ldy = leading_dim(y.stride(0), p.rows, N);
  } else {
    const int64_t B = x.size(0), S = x.size(1);
    p.ldx = leading_dim(x.stride(1), S, K);
    p.ldy = leading_dim(y.stride(1), S, N);
    if (B == 1 || (x.stride(0) == S * p.ldx && y.stride(0) == S * p.ldy)) {
      p.rows = B * S;  // the batch folds into the rows: one bigger GEMM
    } else {
      p.rows = S;  // rows of a larger buffer per batch: strided-batched
      p.batch = B;
      p.batch_stride_x = x.stride(0);
      p.batch_stride_y = y.stride(0);
    }
  }
  PD_REQUIRE(p.ldx >= K && p.ldy >= N, op, ": rows of x ", x.desc(), " or y ", y.desc(), " overlap (strides ",
             shape_str(x.strides()), ", ", shape_str(y.strides()), ")");
  cuda::DeviceGuard guard(index_);
  matmul_->linear(p, y.data(), x.data(), w.data(), bias.defined() ? bias.data() : nullptr, ep, stream_);
}

void CudaBackendImpl::linear_gated_residual(const Tensor& residual, const Tensor& x, const Tensor& w,
                                            const Tensor& bias, const Tensor& gate) {
  const char* op = "linear_gated_residual";
  for (auto [name, t] : {std::pair{"residual", &residual}, std::pair{"x", &x}, std::pair{"w", &w},
                         std::pair{"gate", &gate}}) {
    require_here(op, name, *t);
    require_dtype(op, name, *t, DType::kBF16);
    require_rows(op, name, *t);
  }
  PD_REQUIRE(x.dim() == 3 && residual.dim() == 3, op, ": x ", x.desc(), " and residual ", residual.desc(),
             " must be [B, S, K] and [B, S, N]");
  PD_REQUIRE(w.dim() == 2 && w.is_contiguous(), op, ": w ", w.desc(), " must be a contiguous [N, K]");
  const int64_t B = x.size(0), S = x.size(1), N = w.size(0), K = w.size(1);
  PD_REQUIRE(x.size(2) == K, op, ": x ", x.desc(), " has K = ", x.size(2), " but w ", w.desc(), " has K = ", K);
  require_shape(op, "residual", residual, {B, S, N});
  require_shape(op, "gate", gate, {B, N});
  if (bias.defined()) {
    require_here(op, "bias", bias);
    require_dtype(op, "bias", bias, DType::kBF16);
    PD_REQUIRE(bias.dim() == 1 && bias.size(0) == N && (N <= 1 || bias.stride(0) == 1), op, ": bias ", bias.desc(),
               " must be a contiguous [", N, "]");
  }
  if (residual.numel() == 0) return;
  PD_REQUIRE(K > 0, op, ": K = 0 (x ", x.desc(), ", w ", w.desc(), ")");
  cuda::DeviceGuard guard(index_);

  // GEMM + bias into a temporary, then residual += gate ⊙ tmp in one vectorised pass. (cuBLASLt's per-column
  // alpha vector, which would fold the gate into the GEMM, has no bf16 kernel on Hopper: the heuristic answers
  // NOT_SUPPORTED, and f32 bias vectors with bf16 output are refused.)
  Tensor tmp = Tensor::empty({B, S, N}, DType::kBF16, *alloc_);
  linear(tmp, x, w, bias, Epilogue::kNone);
  cuda::launch_gated_add(residual, tmp, gate, stream_);
}

void CudaBackendImpl::layer_norm_modulate(const Tensor& y, const Tensor& x, const Tensor& shift, const Tensor& scale,
                                          float eps) {
  const char* op = "layer_norm_modulate";
  for (auto [name, t] : {std::pair{"y", &y}, std::pair{"x", &x}}) {
    require_here(op, name, *t);
    require_dtype(op, name, *t, DType::kBF16);
    require_rows(op, name, *t);
  }
  PD_REQUIRE(x.dim() == 3, op, ": x ", x.desc(), " must be [B, S, D]");
  require_shape(op, "y", y, x.shape());
  PD_REQUIRE(shift.defined() == scale.defined(), op, ": shift and scale must both be given or both be undefined");
  const int64_t B = x.size(0), D = x.size(2);
  if (shift.defined()) {
    for (auto [name, t] : {std::pair{"shift", &shift}, std::pair{"scale", &scale}}) {
      require_here(op, name, *t);
      require_dtype(op, name, *t, DType::kBF16);
      require_rows(op, name, *t);
      require_shape(op, name, *t, {B, D});
    }
  }
  PD_REQUIRE(eps >= 0.0f, op, ": eps ", eps, " is negative");
  if (x.numel() == 0) return;
  cuda::DeviceGuard guard(index_);
  cuda::launch_layer_norm_modulate(y, x, shift, scale, eps, stream_);
}

void CudaBackendImpl::rms_norm_rope(const Tensor& y, const Tensor& x, const Tensor& weight, const Tensor& cos,
                                    const Tensor& sin, float eps) {
  const char* op = "rms_norm_rope";
  for (auto [name, t] : {std::pair{"y", &y}, std::pair{"x", &x}, std::pair{"weight", &weight}}) {
    require_here(op, name, *t);
    require_dtype(op, name, *t, DType::kBF16);
    require_rows(op, name, *t);
  }
  PD_REQUIRE(x.dim() == 4, op, ": x ", x.desc(), " must be [B, S, H, d]");
  require_shape(op, "y", y, x.shape());
  const int64_t S = x.size(1), d = x.size(3);
  require_shape(op, "weight", weight, {d});
  PD_REQUIRE(cos.defined() == sin.defined(), op, ": cos and sin must both be given or both be undefined");
  if (cos.defined()) {
    for (auto [name, t] : {std::pair{"cos", &cos}, std::pair{"sin", &sin}}) {
      require_here(op, name, *t);
      require_dtype(op, name, *t, DType::kF32);
      require_rows(op, name, *t);
      require_shape(op, name, *t, {S, d});
    }
    PD_REQUIRE(d % 2 == 0, op, ": RoPE needs an even head dim, x is ", x.desc());
  }
  PD_REQUIRE(eps >= 0.0f, op, ": eps ", eps, " is negative");
  if (x.numel() == 0) return;
  cuda::DeviceGuard guard(index_);
  cuda::launch_rms_norm_rope(y, x, weight, cos, sin, eps, stream_);
}

void CudaBackendImpl::attention(const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k,
                                const Tensor& v, float scale) {
  const char* op = "attention";
  for (auto [name, t] : {std::pair{"out", &out}, std::pair{"q", &q}, std::pair{"k", &k}, std::pair{"v", &v}}) {
    require_here(op, name, *t);
    require_dtype(op, name, *t, DType::kBF16);
    require_rows(op, name, *t);
    PD_REQUIRE(t->dim() == 4, op, ": ", name, " ", t->desc(), " must be [B, S, H, d]");
  }
  const int64_t B = q.size(0), Sq = q.size(1), H = q.size(2), d = q.size(3), Skv = k.size(1);
  PD_REQUIRE(k.size(0) == B && k.size(2) == H && k.size(3) == d, op, ": k ", k.desc(), " does not match q ", q.desc(),
             " in batch, heads or head dim");
  require_shape(op, "v", v, k.shape());
  require_shape(op, "out", out, q.shape());
  if (lse.defined()) {
    require_here(op, "lse", lse);
    require_dtype(op, "lse", lse, DType::kF32);
    require_rows(op, "lse", lse);
    require_shape(op, "lse", lse, {B, H, Sq});
  }
  if (out.numel() == 0) return;
  cuda::DeviceGuard guard(index_);
  if (Skv == 0) {
    // No keys (an empty shard of an uneven split): an empty softmax sum, which Ring attention's merge reads as
    // weight zero — out = 0, lse = −∞, as the CPU reference does.
    cuda::launch_fill(out, 0.0f, stream_);
    if (lse.defined()) cuda::launch_fill(lse, -std::numeric_limits<float>::infinity(), stream_);
    return;
  }
  if (!sdpa_) sdpa_ = std::make_unique<cuda::Sdpa>(stream_);
  sdpa_->run(out, lse, q, k, v, scale, *alloc_);
}

void CudaBackendImpl::silu(const Tensor& y, const Tensor& x) {
  require_here("silu", "y", y);
  require_here("silu", "x", x);
  require_shape("silu", "y", y, x.shape());
  require_dtype("silu", "y", y, x.dtype());
  if (y.numel() == 0) return;
  cuda::DeviceGuard guard(index_);
  cuda::launch_unary(cuda::Unary::kSilu, y, x, stream_);
}

void CudaBackendImpl::gelu_tanh(const Tensor& y, const Tensor& x) {
  require_here("gelu_tanh", "y", y);
  require_here("gelu_tanh", "x", x);
  require_shape("gelu_tanh", "y", y, x.shape());
  require_dtype("gelu_tanh", "y", y, x.dtype());
  if (y.numel() == 0) return;
  cuda::DeviceGuard guard(index_);
  cuda::launch_unary(cuda::Unary::kGeluTanh, y, x, stream_);
}

void CudaBackendImpl::add(const Tensor& y, const Tensor& a, const Tensor& b) {
  for (auto [name, t] : {std::pair{"y", &y}, std::pair{"a", &a}, std::pair{"b", &b}}) {
    require_here("add", name, *t);
    require_shape("add", name, *t, y.shape());
    require_dtype("add", name, *t, y.dtype());
  }
  if (y.numel() == 0) return;
  cuda::DeviceGuard guard(index_);
  cuda::launch_add(y, a, b, stream_);
}

void CudaBackendImpl::gated_add(const Tensor& x, const Tensor& y, const Tensor& gate) {
  const char* op = "gated_add";
  for (auto [name, t] : {std::pair{"x", &x}, std::pair{"y", &y}, std::pair{"gate", &gate}}) {
    require_here(op, name, *t);
    require_dtype(op, name, *t, x.dtype());
  }
  PD_REQUIRE(x.dim() == 3, op, ": x ", x.desc(), " must be [B, S, D]");
  require_shape(op, "y", y, x.shape());
  require_shape(op, "gate", gate, {x.size(0), x.size(2)});
  if (x.numel() == 0) return;
  cuda::DeviceGuard guard(index_);
  cuda::launch_gated_add(x, y, gate, stream_);
}

}  // namespace paradit
