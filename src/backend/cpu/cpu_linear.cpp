// linear: tiles of x·wᵀ over OpenMP threads, each a single-threaded sgemm on
// strided views (lda/ldc carry the row strides), with the epilogue applied to the tile while it is warm.

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_check.h"
#include "backend/cpu/cpu_math.h"

namespace paradit {
namespace {

// A run of rows of x and y with uniform row strides, i.e. a pair of BLAS matrices.
struct MatBlock {
  const float* x;
  int64_t ldx;
  float* y;
  int64_t ldy;
  int64_t rows;
  int64_t batch;  // index along dimension 0 (gated residual: which gate row)
};

struct Tile {
  int64_t block, m0, m, n0, n;
};

// Splits x [..., K] and y [..., N] (same leading shape) into as few BLAS matrices as their strides allow:
// the trailing leading dimensions are merged into rows while both tensors keep a uniform row stride; the
// dimensions left outside enumerate the blocks.
std::vector<MatBlock> make_blocks(const Tensor& x, const Tensor& y) {
  const int r = x.dim();
  const int64_t K = x.size(-1), N = y.size(-1);
  // Dimensions [j, r-2] form the rows; a dimension joins while both tensors keep one row stride across it.
  int j = r - 1;
  int64_t rows = 1, sx = 0, sy = 0;
  bool fixed = false;  // whether a dimension of size > 1 has set the row strides
  for (int d = r - 2; d >= 0; --d) {
    const int64_t n = x.size(d);
    if (n != 1) {
      if (!fixed) {
        sx = x.stride(d), sy = y.stride(d), fixed = true;
      } else if (x.stride(d) != sx * rows || y.stride(d) != sy * rows) {
        break;
      }
    }
    rows *= n;
    j = d;
  }
  // BLAS wants ld >= width; broadcast (stride 0) or overlapping rows fall back to one row per block.
  if (rows > 1 && (sx < K || sy < N)) {
    j = r - 1;
    rows = 1;
  }
  if (rows <= 1) sx = K, sy = N;
  // Enumerate dims [0, j) row-major.
  int64_t outer = 1;
  for (int d = 0; d < j; ++d) outer *= x.size(d);
  std::vector<MatBlock> blocks;
  blocks.reserve(size_t(outer));
  const float* xb = x.data_as<float>();
  float* yb = y.data_as<float>();
  for (int64_t o = 0; o < outer; ++o) {
    int64_t rem = o, ox = 0, oy = 0;
    for (int d = j - 1; d >= 0; --d) {
      const int64_t i = rem % x.size(d);
      rem /= x.size(d);
      ox += i * x.stride(d);
      oy += i * y.stride(d);
    }
    blocks.push_back({xb + ox, std::max<int64_t>(sx, 1), yb + oy, std::max<int64_t>(sy, 1), rows, 0});
  }
  return blocks;
}

// Cuts every block into tiles so that each thread gets work: rows first (at most kMaxRows each, which also
// bounds the gated residual's scratch), columns too when there are too few rows (M = 1 projections).
std::vector<Tile> make_tiles(const std::vector<MatBlock>& blocks, int64_t N, int threads) {
  constexpr int64_t kMaxRows = 256, kMinCols = 256;
  std::vector<Tile> tiles;
  for (size_t b = 0; b < blocks.size(); ++b) {
    const int64_t M = blocks[b].rows;
    const int64_t m_parts = (M + kMaxRows - 1) / kMaxRows;
    const int64_t want = (int64_t(threads) + int64_t(blocks.size()) - 1) / int64_t(blocks.size());
    int64_t n_parts = 1;
    if (m_parts < want)
      n_parts = std::clamp<int64_t>((want + m_parts - 1) / m_parts, 1, std::max<int64_t>(N / kMinCols, 1));
    const int64_t m_len = (M + m_parts - 1) / m_parts, n_len = (N + n_parts - 1) / n_parts;
    for (int64_t m0 = 0; m0 < M; m0 += m_len)
      for (int64_t n0 = 0; n0 < N; n0 += n_len)
        tiles.push_back({int64_t(b), m0, std::min(m_len, M - m0), n0, std::min(n_len, N - n0)});
  }
  return tiles;
}

// c[m, n] (ldc) = a[m, K] (lda) · w[n, K] (ldw)ᵀ, plus c's own value when `accumulate`.
void gemm_nt(const float* a, int64_t lda, const float* w, int64_t ldw, int64_t K, float* c, int64_t ldc, int64_t m,
             int64_t n, bool accumulate) {
  if (K == 0) {  // BLAS may return without touching C when K = 0; the product is still zero
    if (!accumulate)
      for (int64_t i = 0; i < m; ++i) std::fill(c + i * ldc, c + i * ldc + n, 0.0f);
    return;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(m), int(n), int(K), 1.0f, a, int(lda), w, int(ldw),
              accumulate ? 1.0f : 0.0f, c, int(ldc));
}

void check_linear_args(const char* op, const Tensor& y, const Tensor& x, const Tensor& w, const Tensor& bias) {
  cpu::require_f32_rows(op, "y", y);
  cpu::require_f32_rows(op, "x", x);
  cpu::require_f32_rows(op, "w", w);
  PD_REQUIRE(w.dim() == 2 && (w.size(0) <= 1 || w.stride(0) >= w.size(1)), op, ": w ", w.desc(),
             " must be [N, K] with rows that do not overlap");
  PD_REQUIRE(x.dim() >= 2, op, ": x ", x.desc(), " must be [B, S, K] or [M, K]");
  const int64_t N = w.size(0), K = w.size(1);
  PD_REQUIRE(x.size(-1) == K, op, ": x ", x.desc(), " has K = ", x.size(-1), " but w ", w.desc(), " has K = ", K);
  Shape want = x.shape();
  want.back() = N;
  PD_REQUIRE(y.shape() == want, op, ": y is ", y.desc(), ", expected ", shape_str(want), " for x ", x.desc(),
             " and w ", w.desc());
  if (bias.defined()) {
    cpu::require_f32_rows(op, "bias", bias);
    cpu::require_shape(op, "bias", bias, {N});
  }
  PD_REQUIRE(!cpu::may_overlap(y, x) && !cpu::may_overlap(y, w), op, ": y ", y.desc(),
             " overlaps an input (x or w); matmul outputs cannot alias inputs");
  PD_REQUIRE(N <= INT32_MAX && K <= INT32_MAX && w.stride(0) <= INT32_MAX, op, ": w ", w.desc(),
             " is too large for BLAS");
}

// Row stride of w as BLAS takes it (any value ≥ K for a single row).
int64_t ldw_of(const Tensor& w) { return w.size(0) <= 1 ? std::max<int64_t>(w.size(1), 1) : w.stride(0); }

}  // namespace

void CpuBackend::linear(const Tensor& y, const Tensor& x, const Tensor& w, const Tensor& bias, Epilogue ep) {
  check_linear_args("linear", y, x, w, bias);
  const int64_t N = w.size(0), K = w.size(1);
  if (y.numel() == 0) return;
  const auto blocks = make_blocks(x, y);
  const auto tiles = make_tiles(blocks, N, threads_);
  const float* wp = w.data_as<float>();
  const int64_t ldw = ldw_of(w);
  const float* bp = bias.defined() ? bias.data_as<float>() : nullptr;
  cpu::parallel_for_dynamic(threads_, int64_t(tiles.size()), [&](int64_t t) {
    const Tile& tl = tiles[size_t(t)];
    const MatBlock& b = blocks[size_t(tl.block)];
    float* c = b.y + tl.m0 * b.ldy + tl.n0;
    gemm_nt(b.x + tl.m0 * b.ldx, b.ldx, wp + tl.n0 * ldw, ldw, K, c, b.ldy, tl.m, tl.n, /*accumulate=*/false);
    if (!bp && ep == Epilogue::kNone) return;
    for (int64_t i = 0; i < tl.m; ++i) {
      float* row = c + i * b.ldy;
      if (bp)
        for (int64_t n = 0; n < tl.n; ++n) row[n] += bp[tl.n0 + n];
      if (ep == Epilogue::kGeluTanh)
        for (int64_t n = 0; n < tl.n; ++n) row[n] = cpu::gelu_tanh(row[n]);
    }
  });
}

void CpuBackend::linear_accumulate(const Tensor& y, const Tensor& x, const Tensor& w) {
  check_linear_args("linear_accumulate", y, x, w, Tensor());
  const int64_t K = w.size(1);
  if (y.numel() == 0) return;
  const auto blocks = make_blocks(x, y);
  const auto tiles = make_tiles(blocks, w.size(0), threads_);
  const float* wp = w.data_as<float>();
  const int64_t ldw = ldw_of(w);
  cpu::parallel_for_dynamic(threads_, int64_t(tiles.size()), [&](int64_t t) {
    const Tile& tl = tiles[size_t(t)];
    const MatBlock& b = blocks[size_t(tl.block)];
    gemm_nt(b.x + tl.m0 * b.ldx, b.ldx, wp + tl.n0 * ldw, ldw, K, b.y + tl.m0 * b.ldy + tl.n0, b.ldy, tl.m, tl.n,
            /*accumulate=*/true);
  });
}

}  // namespace paradit
