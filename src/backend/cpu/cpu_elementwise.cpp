// Elementwise ops: silu, gelu_tanh, add, gated_add. Outputs may alias their inputs (same element, same place).

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

}  // namespace

void CpuBackend::silu(const Tensor& y, const Tensor& x) {
  check_unary("silu", y, x);
  unary(threads_, y, x, 16, [](float v) { return cpu::silu(v); });
}

void CpuBackend::gelu_tanh(const Tensor& y, const Tensor& x) {
  check_unary("gelu_tanh", y, x);
  unary(threads_, y, x, 16, [](float v) { return cpu::gelu_tanh(v); });
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

}  // namespace paradit
