// The compute ops of the CUDA backend: argument validation (op name and shapes in every message), then the
// launcher or library call. Nothing here waits for the GPU (embedding's ids are staged from pageable host
// memory, which CUDA copies out before cudaMemcpyAsync returns).
#include <algorithm>
#include <limits>

#include "backend/cuda/cuda_backend_impl.h"
#include "backend/cuda/copy.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/elementwise.h"
#include "backend/cuda/group_norm.h"
#include "backend/cuda/layer_norm.h"
#include "backend/cuda/lse_merge.h"
#include "backend/cuda/rgb8.h"
#include "backend/cuda/rms_norm_rope.h"
#include "backend/cuda/scratch.h"
#include "backend/cuda/text_ops.h"
#include "backend/cuda/upsample.h"

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

cuda::GemmProblem CudaBackendImpl::gemm_problem(const char* op, const Tensor& y, const Tensor& x,
                                                const Tensor& w) const {
  for (auto [name, t] : {std::pair{"y", &y}, std::pair{"x", &x}, std::pair{"w", &w}}) {
    require_here(op, name, *t);
    require_dtype(op, name, *t, DType::kBF16);
    require_rows(op, name, *t);
  }
  PD_REQUIRE(x.dim() == 2 || x.dim() == 3, op, ": x ", x.desc(), " must be [B, S, K] or [M, K]");
  PD_REQUIRE(w.dim() == 2, op, ": w ", w.desc(), " must be [N, K]");
  const int64_t N = w.size(0), K = w.size(1);
  PD_REQUIRE(x.size(-1) == K, op, ": x ", x.desc(), " has K = ", x.size(-1), " but w ", w.desc(), " has K = ", K);
  Shape y_shape = x.shape();
  y_shape.back() = N;
  require_shape(op, "y", y, y_shape);
  PD_REQUIRE(y.numel() == 0 || K > 0, op, ": K = 0 (x ", x.desc(), ", w ", w.desc(), ")");

  cuda::GemmProblem p;
  p.n = N;
  p.k = K;
  p.ldw = leading_dim(w.stride(0), N, K);
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
  PD_REQUIRE(p.ldx >= K && p.ldy >= N && p.ldw >= K, op, ": rows of x ", x.desc(), ", y ", y.desc(), " or w ",
             w.desc(), " overlap (strides ", shape_str(x.strides()), ", ", shape_str(y.strides()), ", ",
             shape_str(w.strides()), ")");
  return p;
}

void CudaBackendImpl::linear(const Tensor& y, const Tensor& x, const Tensor& w, const Tensor& bias, Epilogue ep) {
  const char* op = "linear";
  const cuda::GemmProblem p = gemm_problem(op, y, x, w);
  if (bias.defined()) {
    require_here(op, "bias", bias);
    require_dtype(op, "bias", bias, DType::kBF16);
    PD_REQUIRE(bias.dim() == 1 && bias.size(0) == p.n && (p.n <= 1 || bias.stride(0) == 1), op, ": bias ",
               bias.desc(), " must be a contiguous [", p.n, "]");
  }
  if (y.numel() == 0) return;
  cuda::DeviceGuard guard(index_);
  matmul_->linear(p, y.data(), x.data(), w.data(), bias.defined() ? bias.data() : nullptr, ep, /*accumulate=*/false,
                  stream_);
}

void CudaBackendImpl::linear_accumulate(const Tensor& y, const Tensor& x, const Tensor& w) {
  const cuda::GemmProblem p = gemm_problem("linear_accumulate", y, x, w);
  if (y.numel() == 0) return;
  cuda::DeviceGuard guard(index_);
  matmul_->linear(p, y.data(), x.data(), w.data(), nullptr, Epilogue::kNone, /*accumulate=*/true, stream_);
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

void CudaBackendImpl::lse_merge(const Tensor& out, const Tensor& lse, const std::vector<Tensor>& block_outs,
                                const std::vector<Tensor>& block_lses) {
  check_lse_merge(out, lse, block_outs, block_lses);
  if (out.numel() == 0) return;
  cuda::DeviceGuard guard(index_);
  cuda::launch_lse_merge(out, lse, block_outs, block_lses, stream_);
}

void CudaBackendImpl::gated_add_layer_norm_modulate(const Tensor& y, const Tensor& x, const Tensor& delta,
                                                    const Tensor& gate, const Tensor& shift, const Tensor& scale,
                                                    float eps) {
  const char* op = "gated_add_layer_norm_modulate";
  for (auto [name, t] : {std::pair{"y", &y}, std::pair{"x", &x}, std::pair{"delta", &delta},
                         std::pair{"gate", &gate}, std::pair{"shift", &shift}, std::pair{"scale", &scale}}) {
    require_here(op, name, *t);
    require_dtype(op, name, *t, DType::kBF16);
    require_rows(op, name, *t);
  }
  PD_REQUIRE(x.dim() == 3, op, ": x ", x.desc(), " must be [B, S, D]");
  require_shape(op, "y", y, x.shape());
  require_shape(op, "delta", delta, x.shape());
  const int64_t B = x.size(0), D = x.size(2);
  for (auto [name, t] : {std::pair{"gate", &gate}, std::pair{"shift", &shift}, std::pair{"scale", &scale}})
    require_shape(op, name, *t, {B, D});
  PD_REQUIRE(eps >= 0.0f, op, ": eps ", eps, " is negative");
  if (x.numel() == 0) return;
  cuda::DeviceGuard guard(index_);
  cuda::launch_layer_norm_modulate(y, x, shift, scale, eps, stream_, delta, gate);
}

void CudaBackendImpl::check_rms_norm_rope(const char* op, const Tensor& y, const Tensor& x, const Tensor& weight,
                                          const Tensor& cos, const Tensor& sin, float eps) const {
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
}

void CudaBackendImpl::rms_norm_rope(const Tensor& y, const Tensor& x, const Tensor& weight, const Tensor& cos,
                                    const Tensor& sin, float eps) {
  check_rms_norm_rope("rms_norm_rope", y, x, weight, cos, sin, eps);
  if (x.numel() == 0) return;
  cuda::DeviceGuard guard(index_);
  cuda::launch_rms_norm_rope(y, x, weight, cos, sin, eps, stream_);
}

void CudaBackendImpl::qk_norm_rope(const Tensor& q, const Tensor& k, const Tensor& q_weight, const Tensor& k_weight,
                                   const Tensor& cos, const Tensor& sin, float eps) {
  check_rms_norm_rope("qk_norm_rope (q)", q, q, q_weight, cos, sin, eps);
  check_rms_norm_rope("qk_norm_rope (k)", k, k, k_weight, cos, sin, eps);
  PD_REQUIRE(k.shape() == q.shape(), "qk_norm_rope: k ", k.desc(), " and q ", q.desc(), " differ in shape");
  if (q.numel() == 0) return;
  cuda::DeviceGuard guard(index_);
  // One pass needs RoPE, distinct q and k, and a layout the kernel takes; otherwise a pass each.
  if (cos.defined() && q.data() != k.data() &&
      cuda::launch_qk_norm_rope(q, k, q_weight, k_weight, cos, sin, eps, stream_))
    return;
  cuda::launch_rms_norm_rope(q, q, q_weight, cos, sin, eps, stream_);
  cuda::launch_rms_norm_rope(k, k, k_weight, cos, sin, eps, stream_);
}

void CudaBackendImpl::check_attention(const char* op, const Tensor& out, const Tensor& q, const Tensor& k,
                                      const Tensor& v) const {
  for (auto [name, t] : {std::pair{"out", &out}, std::pair{"q", &q}, std::pair{"k", &k}, std::pair{"v", &v}}) {
    require_here(op, name, *t);
    require_dtype(op, name, *t, DType::kBF16);
    require_rows(op, name, *t);
    PD_REQUIRE(t->dim() == 4, op, ": ", name, " ", t->desc(), " must be [B, S, H, d]");
  }
  const int64_t B = q.size(0), H = q.size(2), d = q.size(3);
  PD_REQUIRE(k.size(0) == B && k.size(2) == H && k.size(3) == d, op, ": k ", k.desc(), " does not match q ", q.desc(),
             " in batch, heads or head dim");
  require_shape(op, "v", v, k.shape());
  require_shape(op, "out", out, q.shape());
}

cuda::GemmAttention& CudaBackendImpl::gemm_attention() {
  if (!gemm_attention_) gemm_attention_ = std::make_unique<cuda::GemmAttention>(stream_);
  return *gemm_attention_;
}

void CudaBackendImpl::attention(const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k,
                                const Tensor& v, float scale) {
  const char* op = "attention";
  check_attention(op, out, q, k, v);
  const int64_t B = q.size(0), Sq = q.size(1), H = q.size(2), Skv = k.size(1);
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
  // cuDNN's fused kernels when they take the layout (head dim ≤ 256, aligned) and have an engine for it; GEMMs +
  // softmax otherwise (the VAE's 512-wide head).
  if (!force_gemm_attention_ && cuda::Sdpa::eligible(out, q, k, v)) {
    if (!sdpa_) sdpa_ = std::make_unique<cuda::Sdpa>(stream_);
    if (sdpa_->run(out, lse, q, k, v, scale, *alloc_)) return;
  }
  gemm_attention().run(out, lse, q, k, v, scale, Tensor(), false, *alloc_);
}

void CudaBackendImpl::attention_biased(const Tensor& out, const Tensor& q, const Tensor& k, const Tensor& v,
                                       float scale, const Tensor& bias, bool causal) {
  const char* op = "attention_biased";
  check_attention(op, out, q, k, v);
  const int64_t Sq = q.size(1), H = q.size(2), Skv = k.size(1);
  if (bias.defined()) {
    require_here(op, "bias", bias);
    require_dtype(op, "bias", bias, DType::kF32);
    require_rows(op, "bias", bias);
    PD_REQUIRE(bias.shape() == Shape({H, Sq, Skv}), op, ": bias is ", bias.desc(), ", expected [H, Sq, Skv] = ",
               shape_str({H, Sq, Skv}), " for q ", q.desc(), " and k ", k.desc());
  }
  if (out.numel() == 0) return;
  if (!bias.defined() && !causal) return attention(out, Tensor(), q, k, v, scale);
  cuda::DeviceGuard guard(index_);
  gemm_attention().run(out, Tensor(), q, k, v, scale, bias, causal, *alloc_);
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

void CudaBackendImpl::quick_gelu(const Tensor& y, const Tensor& x) {
  require_here("quick_gelu", "y", y);
  require_here("quick_gelu", "x", x);
  require_shape("quick_gelu", "y", y, x.shape());
  require_dtype("quick_gelu", "y", y, x.dtype());
  if (y.numel() == 0) return;
  cuda::DeviceGuard guard(index_);
  cuda::launch_unary(cuda::Unary::kQuickGelu, y, x, stream_);
}

void CudaBackendImpl::mul(const Tensor& y, const Tensor& a, const Tensor& b) {
  for (auto [name, t] : {std::pair{"y", &y}, std::pair{"a", &a}, std::pair{"b", &b}}) {
    require_here("mul", name, *t);
    require_shape("mul", name, *t, y.shape());
    require_dtype("mul", name, *t, y.dtype());
  }
  if (y.numel() == 0) return;
  cuda::DeviceGuard guard(index_);
  cuda::launch_mul(y, a, b, stream_);
}

void CudaBackendImpl::axpby(const Tensor& y, const Tensor& a, float alpha, const Tensor& b, float beta) {
  const char* op = "axpby";
  for (auto [name, t] : {std::pair{"y", &y}, std::pair{"a", &a}, std::pair{"b", &b}}) {
    require_here(op, name, *t);
    PD_REQUIRE(t->dtype() == DType::kF32 || t->dtype() == DType::kBF16 || t->dtype() == DType::kF16, op, ": ", name,
               " ", t->desc(), " must be f32, bf16 or f16");
    require_rows(op, name, *t);
    require_shape(op, name, *t, y.shape());
  }
  // y may be an input itself (same place, strides and dtype): each element is read before it is written.
  for (const Tensor* in : {&a, &b})
    PD_REQUIRE(y.data() != in->data() || (y.strides() == in->strides() && y.dtype() == in->dtype()), op, ": y ",
               y.desc(), " aliases an input ", in->desc(), " with other strides or dtype");
  if (y.numel() == 0) return;
  cuda::DeviceGuard guard(index_);
  cuda::launch_axpby(y, a, alpha, b, beta, stream_);
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

// ---------------------------------------------------------------------------------------------------------------
// Text encoders

void CudaBackendImpl::embedding(const Tensor& out, const Tensor& table, const std::vector<int32_t>& ids) {
  const char* op = "embedding";
  for (auto [name, t] : {std::pair{"out", &out}, std::pair{"table", &table}}) {
    require_here(op, name, *t);
    require_rows(op, name, *t);
  }
  require_dtype(op, "table", table, out.dtype());
  PD_REQUIRE(out.dim() == 3, op, ": out ", out.desc(), " must be [B, S, D]");
  PD_REQUIRE(table.dim() == 2, op, ": table ", table.desc(), " must be [V, D]");
  const int64_t B = out.size(0), S = out.size(1), D = out.size(2), V = table.size(0);
  PD_REQUIRE(table.size(1) == D, op, ": table ", table.desc(), " has D = ", table.size(1), " but out ", out.desc(),
             " has D = ", D);
  PD_REQUIRE(int64_t(ids.size()) == B * S, op, ": ", ids.size(), " ids for out ", out.desc(), " (B·S = ", B * S,
             ")");
  // Every id is checked before anything is enqueued, so a bad one leaves out untouched and is named.
  for (size_t i = 0; i < ids.size(); ++i)
    PD_REQUIRE(ids[i] >= 0 && ids[i] < V, op, ": id ", ids[i], " at position ", i, " (batch ", int64_t(i) / S,
               ", token ", int64_t(i) % S, ") is outside the table ", table.desc(), " [0, ", V, ")");
  if (out.numel() == 0) return;
  cuda::DeviceGuard guard(index_);
  cuda::Scratch dev_ids(*alloc_, ids.size() * sizeof(int32_t));
  PD_CUDA_CHECK(cudaMemcpyAsync(dev_ids.get(), ids.data(), ids.size() * sizeof(int32_t), cudaMemcpyHostToDevice,
                                stream_));
  cuda::launch_embedding(out, table, dev_ids.as<int32_t>(), stream_);
}

void CudaBackendImpl::layer_norm(const Tensor& y, const Tensor& x, const Tensor& weight, const Tensor& bias,
                                 float eps) {
  const char* op = "layer_norm";
  for (auto [name, t] : {std::pair{"y", &y}, std::pair{"x", &x}, std::pair{"weight", &weight}}) {
    require_here(op, name, *t);
    require_dtype(op, name, *t, DType::kBF16);
    require_rows(op, name, *t);
  }
  require_shape(op, "y", y, x.shape());
  const int64_t D = x.size(-1);
  require_shape(op, "weight", weight, {D});
  if (bias.defined()) {
    require_here(op, "bias", bias);
    require_dtype(op, "bias", bias, DType::kBF16);
    require_rows(op, "bias", bias);
    require_shape(op, "bias", bias, {D});
  }
  PD_REQUIRE(eps >= 0.0f, op, ": eps ", eps, " is negative");
  if (y.numel() == 0) return;
  cuda::DeviceGuard guard(index_);
  cuda::launch_layer_norm(y, x, weight, bias, eps, stream_);
}

// ---------------------------------------------------------------------------------------------------------------
// VAE

void CudaBackendImpl::conv2d(const Tensor& y, const Tensor& x, const Tensor& w, const Tensor& bias, int pad) {
  const char* op = "conv2d";
  for (auto [name, t] : {std::pair{"y", &y}, std::pair{"x", &x}, std::pair{"w", &w}}) {
    require_here(op, name, *t);
    require_dtype(op, name, *t, DType::kBF16);
    require_rows(op, name, *t);
  }
  PD_REQUIRE(w.is_contiguous(), op, ": w ", w.desc(), " must be a contiguous [Cout, kh, kw, Cin]");
  check_conv2d_shapes(y, x, w, pad);
  const int64_t Cin = x.size(3), Cout = w.size(0);
  if (bias.defined()) {
    require_here(op, "bias", bias);
    require_dtype(op, "bias", bias, DType::kBF16);
    require_rows(op, "bias", bias);
    require_shape(op, "bias", bias, {Cout});
  }
  if (y.numel() == 0) return;
  cuda::DeviceGuard guard(index_);
  if (Cin == 0) {  // an empty sum: y = bias (or 0)
    cuda::launch_fill(y, 0.0f, stream_);
    if (bias.defined())
      cuda::launch_add(y, y, Tensor::borrow(bias.data(), y.shape(), {0, 0, 0, bias.stride(0)}, bias.dtype(),
                                            bias.device()), stream_);
    return;
  }
  if (!conv_) conv_ = std::make_unique<cuda::Conv2d>(stream_, *matmul_, force_gemm_conv_);
  conv_->run(y, x, w, bias, pad, *alloc_);
}

namespace {

// x bf16 [B, H, W, C] with C divisible by groups.
void check_group_norm_input(const char* op, const Tensor& x, int groups) {
  require_dtype(op, "x", x, DType::kBF16);
  require_rows(op, "x", x);
  PD_REQUIRE(x.dim() == 4, op, ": x ", x.desc(), " must be [B, H, W, C]");
  const int64_t C = x.size(3);
  PD_REQUIRE(groups >= 1 && C % groups == 0, op, ": ", groups, " groups do not divide the C = ", C, " channels of x ",
             x.desc());
}

// y like x (y may be x itself, not a shifted view of it); weight, bias bf16 [C]; eps ≥ 0.
void check_group_norm_output(const char* op, const Tensor& y, const Tensor& x, const Tensor& weight,
                             const Tensor& bias, float eps) {
  for (auto [name, t] : {std::pair{"y", &y}, std::pair{"weight", &weight}, std::pair{"bias", &bias}}) {
    require_dtype(op, name, *t, DType::kBF16);
    require_rows(op, name, *t);
  }
  require_shape(op, "y", y, x.shape());
  require_shape(op, "weight", weight, {x.size(3)});
  require_shape(op, "bias", bias, {x.size(3)});
  PD_REQUIRE(eps >= 0.0f, op, ": eps ", eps, " is negative");
  // The statistics are complete before anything is written.
  PD_REQUIRE(y.data() != x.data() || y.strides() == x.strides(), op, ": y ", y.desc(), " aliases x ", x.desc(),
             " with other strides");
}

// The split GroupNorm's sums f32 [2, B, groups] and shift f32 [B, groups] (or undefined).
void check_group_norm_split(const char* op, const Tensor& sums, const Tensor& shift, int64_t B, int groups) {
  require_dtype(op, "sums", sums, DType::kF32);
  require_shape(op, "sums", sums, {2, B, groups});
  if (!shift.defined()) return;
  require_dtype(op, "shift", shift, DType::kF32);
  require_shape(op, "shift", shift, {B, groups});
}

}  // namespace

void CudaBackendImpl::group_norm(const Tensor& y, const Tensor& x, const Tensor& weight, const Tensor& bias,
                                 int groups, float eps, bool silu) {
  const char* op = "group_norm";
  for (auto [name, t] : {std::pair{"y", &y}, std::pair{"x", &x}, std::pair{"weight", &weight},
                         std::pair{"bias", &bias}})
    require_here(op, name, *t);
  check_group_norm_input(op, x, groups);
  check_group_norm_output(op, y, x, weight, bias, eps);
  if (y.numel() == 0) return;
  cuda::DeviceGuard guard(index_);
  cuda::launch_group_norm(y, x, weight, bias, groups, eps, silu, *alloc_, stream_);
}

void CudaBackendImpl::group_norm_sums(const Tensor& sums, const Tensor& x, int groups, const Tensor& shift) {
  const char* op = "group_norm_sums";
  require_here(op, "sums", sums);
  require_here(op, "x", x);
  if (shift.defined()) require_here(op, "shift", shift);
  check_group_norm_input(op, x, groups);
  check_group_norm_split(op, sums, shift, x.size(0), groups);
  if (sums.numel() == 0) return;
  cuda::DeviceGuard guard(index_);
  cuda::launch_group_norm_sums(sums, x, groups, shift, *alloc_, stream_);
}

void CudaBackendImpl::group_norm_apply(const Tensor& y, const Tensor& x, const Tensor& sums, const Tensor& shift,
                                       double count, const Tensor& weight, const Tensor& bias, int groups, float eps,
                                       bool silu) {
  const char* op = "group_norm_apply";
  for (auto [name, t] : {std::pair{"y", &y}, std::pair{"x", &x}, std::pair{"sums", &sums},
                         std::pair{"weight", &weight}, std::pair{"bias", &bias}})
    require_here(op, name, *t);
  if (shift.defined()) require_here(op, "shift", shift);
  check_group_norm_input(op, x, groups);
  check_group_norm_output(op, y, x, weight, bias, eps);
  check_group_norm_split(op, sums, shift, x.size(0), groups);
  PD_REQUIRE(count > 0, op, ": count must be positive, got ", count);
  if (y.numel() == 0) return;
  cuda::DeviceGuard guard(index_);
  cuda::launch_group_norm_apply(y, x, sums, shift, count, weight, bias, groups, eps, silu, *alloc_, stream_);
}

void CudaBackendImpl::upsample_nearest2x(const Tensor& y, const Tensor& x) {
  const char* op = "upsample_nearest2x";
  for (auto [name, t] : {std::pair{"y", &y}, std::pair{"x", &x}}) {
    require_here(op, name, *t);
    require_rows(op, name, *t);
  }
  require_dtype(op, "y", y, x.dtype());
  PD_REQUIRE(x.dim() == 4, op, ": x ", x.desc(), " must be [B, H, W, C]");
  const int64_t B = x.size(0), H = x.size(1), W = x.size(2), C = x.size(3);
  require_shape(op, "y", y, {B, 2 * H, 2 * W, C});
  PD_REQUIRE(y.data() != x.data(), op, ": y ", y.desc(), " and x ", x.desc(), " share their memory");
  if (y.numel() == 0) return;
  cuda::DeviceGuard guard(index_);
  cuda::launch_upsample_nearest2x(y, x, stream_);
}

void CudaBackendImpl::to_rgb8(const Tensor& y, uint8_t* dst) {
  require_here("to_rgb8", "y", y);
  PD_REQUIRE(y.is_contiguous() && (y.dtype() == DType::kF32 || y.dtype() == DType::kBF16),
             "to_rgb8: y must be contiguous f32 or bf16, got ", y.desc());
  PD_REQUIRE(dst != nullptr || y.numel() == 0, "to_rgb8: no destination");
  if (y.numel() == 0) return;
  cuda::DeviceGuard guard(index_);
  cuda::Scratch bytes(*alloc_, size_t(y.numel()));
  cuda::launch_to_rgb8(y, bytes.as<uint8_t>(), stream_);
  PD_CUDA_CHECK(cudaMemcpyAsync(dst, bytes.get(), size_t(y.numel()), cudaMemcpyDeviceToHost, stream_));
  synchronize();  // the bytes are the caller's when this returns
}

}  // namespace paradit
