// Elementwise ops: silu, gelu_tanh, quick_gelu, add, mul, gated_add, axpby. Outputs may alias their inputs
// (same element, same place).

#include <algorithm>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_check.h"
#include "backend/cpu/cpu_math.h"

namespace paradit {
namespace {

// Calls fn(r, j0, j1) over pieces of every row, in parallel; long rows are cut so every thread gets work.
template <typename Fn>
void for_each_row_piece(int threads, int64_t rows, int64_t width, int64_t cost_per_element, Fn&& fn) {
  constexpr int64_t kPiece = 8192;
  int64_t pieces = 1;
  if (threads > 1 && rows < 4 * threads && width >= 2 * kPiece)
    pieces = std::min<int64_t>((width + kPiece - 1) / kPiece, 4 * threads);
  const int64_t len = (width + pieces - 1) / pieces;
  cpu::parallel_for(threads, rows * pieces, len * cost_per_element, [&](int64_t i) {
    const int64_t r = i / pieces, j0 = (i % pieces) * len;
    fn(r, j0, std::min(width, j0 + len));
  });
}

// y and x have equal shapes, and y is x itself or does not overlap it.
void check_unary(const char* op, const Tensor& y, const Tensor& x) {
  cpu::require_f32_rows(op, "y", y);
  cpu::require_f32_rows(op, "x", x);
  cpu::require_shape(op, "y", y, x.shape());
  PD_REQUIRE(!cpu::may_overlap(y, x) || (y.data() == x.data() && y.strides() == x.strides()), op, ": y ",
             y.desc(), " partially overlaps x ", x.desc(), " (only exact aliasing is allowed)");
}

template <typename F>
void unary(int threads, const Tensor& y, const Tensor& x, int64_t cost, F f) {
  if (y.numel() == 0) return;
  const cpu::Rows yr(y), xr(x);
  for_each_row_piece(threads, yr.count(), yr.width(), cost, [&](int64_t r, int64_t j0, int64_t j1) {
    float* yp = yr.row(r);
    const float* xp = xr.row(r);
    for (int64_t j = j0; j < j1; ++j) yp[j] = f(xp[j]);
  });
}

// An axpby operand: a host tensor of an activation dtype (f32, or the bf16/f16 a GPU backend's tensors come in;
// fp8 is a weight storage type only) with a contiguous last dimension.
void require_axpby_operand(const char* name, const Tensor& t) {
  cpu::require_host("axpby", name, t);
  PD_REQUIRE(t.dtype() == DType::kF32 || t.dtype() == DType::kBF16 || t.dtype() == DType::kF16, "axpby: ", name,
             " ", t.desc(), " must be f32, bf16 or f16");
  PD_REQUIRE(t.dim() >= 1, "axpby: ", name, " ", t.desc(), " must have at least one dimension");
  PD_REQUIRE(t.size(-1) <= 1 || t.stride(-1) == 1, "axpby: ", name, " ", t.desc(),
             " must have a contiguous last dimension (stride ", t.stride(-1), ")");
}

// Row r of t, as bytes. cpu::Rows walks the leading dimensions in elements whatever the dtype; only its
// offsets are used here, since its float* rows are meaningless for 16-bit tensors.
char* row_bytes(const Tensor& t, const cpu::Rows& rows, int64_t r) {
  return static_cast<char*>(t.data()) + rows.offset(r) * int64_t(t.element_size());
}

}  // namespace

void CpuBackend::silu(const Tensor& y, const Tensor& x) {
  check_unary("silu", y, x);
  unary(threads_, y, x, 16, [](float v) { return cpu::silu(v); });
}

void CpuBackend::gelu_tanh(const Tensor& y, const Tensor& x) {
  check_unary("gelu_tanh", y, x);
  unary(threads_, y, x, 16, [](float v) { return cpu::gelu_tanh(v); });
}

void CpuBackend::quick_gelu(const Tensor& y, const Tensor& x) {
  check_unary("quick_gelu", y, x);
  unary(threads_, y, x, 16, [](float v) { return cpu::quick_gelu(v); });
}

void CpuBackend::add(const Tensor& y, const Tensor& a, const Tensor& b) {
  check_unary("add", y, a);
  check_unary("add", y, b);
  if (y.numel() == 0) return;
  const cpu::Rows yr(y), ar(a), br(b);
  for_each_row_piece(threads_, yr.count(), yr.width(), 1, [&](int64_t r, int64_t j0, int64_t j1) {
    float* yp = yr.row(r);
    const float* ap = ar.row(r);
    const float* bp = br.row(r);
    for (int64_t j = j0; j < j1; ++j) yp[j] = ap[j] + bp[j];
  });
}

void CpuBackend::gated_add(const Tensor& x, const Tensor& y, const Tensor& gate) {
  const char* op = "gated_add";
  cpu::require_f32_rows(op, "x", x);
  cpu::require_f32_rows(op, "y", y);
  cpu::require_f32_rows(op, "gate", gate);
  PD_REQUIRE(x.dim() == 3, op, ": x ", x.desc(), " must be [B, S, D]");
  cpu::require_shape(op, "y", y, x.shape());
  const int64_t B = x.size(0), S = x.size(1), D = x.size(2);
  cpu::require_shape(op, "gate", gate, {B, D});
  PD_REQUIRE(!cpu::may_overlap(x, gate), op, ": x ", x.desc(), " overlaps gate ", gate.desc());
  PD_REQUIRE(!cpu::may_overlap(x, y) || (x.data() == y.data() && x.strides() == y.strides()), op, ": x ",
             x.desc(), " partially overlaps y ", y.desc(), " (only exact aliasing is allowed)");
  if (x.numel() == 0) return;
  const cpu::Rows xr(x), yr(y);
  const float* g0 = gate.data_as<float>();
  const int64_t gs = gate.stride(0);
  for_each_row_piece(threads_, xr.count(), D, 2, [&](int64_t r, int64_t j0, int64_t j1) {
    float* xp = xr.row(r);
    const float* yp = yr.row(r);
    const float* g = g0 + (r / S) * gs;
    for (int64_t j = j0; j < j1; ++j) xp[j] += g[j] * yp[j];
  });
}

void CpuBackend::mul(const Tensor& y, const Tensor& a, const Tensor& b) {
  check_unary("mul", y, a);
  check_unary("mul", y, b);
  if (y.numel() == 0) return;
  const cpu::Rows yr(y), ar(a), br(b);
  for_each_row_piece(threads_, yr.count(), yr.width(), 1, [&](int64_t r, int64_t j0, int64_t j1) {
    float* yp = yr.row(r);
    const float* ap = ar.row(r);
    const float* bp = br.row(r);
    for (int64_t j = j0; j < j1; ++j) yp[j] = ap[j] * bp[j];
  });
}

void CpuBackend::axpby(const Tensor& y, const Tensor& a, float alpha, const Tensor& b, float beta) {
  const char* op = "axpby";
  require_axpby_operand("y", y);
  require_axpby_operand("a", a);
  require_axpby_operand("b", b);
  cpu::require_shape(op, "a", a, y.shape());
  cpu::require_shape(op, "b", b, y.shape());
  // Exact aliasing (same place, same dtype) is safe: each block of a row is read before it is written.
  for (const Tensor* in : {&a, &b})
    PD_REQUIRE(!cpu::may_overlap(y, *in) ||
                   (y.data() == in->data() && y.strides() == in->strides() && y.dtype() == in->dtype()),
               op, ": y ", y.desc(), " partially overlaps an input ", in->desc(), " (only exact aliasing is allowed)");
  if (y.numel() == 0) return;
  const cpu::Rows yr(y), ar(a), br(b);
  const DType yt = y.dtype(), at = a.dtype(), bt = b.dtype();
  // 16-bit operands are converted block by block into stack buffers, so the arithmetic is one f32 loop
  // whatever the mix of dtypes (the sampler adds bf16 velocities to f32 latents on GPU backends).
  constexpr int64_t kBlock = 512;
  for_each_row_piece(threads_, yr.count(), yr.width(), 3, [&](int64_t r, int64_t j0, int64_t j1) {
    char* yrow = row_bytes(y, yr, r);
    const char* arow = row_bytes(a, ar, r);
    const char* brow = row_bytes(b, br, r);
    float abuf[kBlock], bbuf[kBlock], ybuf[kBlock];
    for (int64_t s = j0; s < j1; s += kBlock) {
      const int64_t n = std::min(kBlock, j1 - s);
      auto load = [n, s](const char* row, DType t, float* buf) -> const float* {
        if (t == DType::kF32) return reinterpret_cast<const float*>(row) + s;
        convert_host(buf, DType::kF32, row + s * int64_t(dtype_size(t)), t, size_t(n));
        return buf;
      };
      const float* ap = load(arow, at, abuf);
      const float* bp = load(brow, bt, bbuf);
      float* yp = yt == DType::kF32 ? reinterpret_cast<float*>(yrow) + s : ybuf;
      for (int64_t j = 0; j < n; ++j) yp[j] = alpha * ap[j] + beta * bp[j];
      if (yt != DType::kF32) convert_host(yrow + s * int64_t(dtype_size(yt)), yt, ybuf, DType::kF32, size_t(n));
    }
  });
}

}  // namespace paradit
