// attention and attention_biased: per (batch, head, block of queries) one task; scores = scale·Q·Kᵀ by sgemm
// straight from the strided q/k views (their row stride is the lda), plus the bias, a numerically stable
// softmax over the keys each query may see, then P·V by sgemm. Memory stays at one [kQueryBlock, Skv] score
// tile per thread however long the sequence.

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_check.h"
#include "backend/cpu/cpu_math.h"

namespace paradit {
namespace {

constexpr int64_t kQueryBlock = 64;

// Whether a [rows, width] matrix with row stride ld must be copied before BLAS can take it (ld < width: a
// broadcast or overlapping view).
bool needs_gather(int64_t rows, int64_t ld, int64_t width) { return rows > 1 && ld < width; }

// The matrix at base as BLAS takes it: itself, or its contiguous copy in scratch when needs_gather.
const float* blas_matrix(const float* base, int64_t rows, int64_t ld, int64_t width, float* scratch,
                         int64_t* ld_out) {
  if (!needs_gather(rows, ld, width)) {
    *ld_out = std::max<int64_t>({ld, width, 1});
    return base;
  }
  for (int64_t i = 0; i < rows; ++i) std::copy(base + i * ld, base + i * ld + width, scratch + i * width);
  *ld_out = std::max<int64_t>(width, 1);
  return scratch;
}

// q, k, v, out shapes and aliasing, as attention() and attention_biased() share them.
void check_qkv(const char* op, const Tensor& out, const Tensor& q, const Tensor& k, const Tensor& v) {
  cpu::require_f32_rows(op, "out", out);
  cpu::require_f32_rows(op, "q", q);
  cpu::require_f32_rows(op, "k", k);
  cpu::require_f32_rows(op, "v", v);
  PD_REQUIRE(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, op, ": q ", q.desc(), ", k ", k.desc(), ", v ", v.desc(),
             " must be [B, S, H, d]");
  const int64_t B = q.size(0), H = q.size(2), d = q.size(3);
  PD_REQUIRE(k.size(0) == B && k.size(2) == H && k.size(3) == d, op, ": k ", k.desc(), " does not match q ",
             q.desc(), " in batch, heads or head dim");
  PD_REQUIRE(v.shape() == k.shape(), op, ": v ", v.desc(), " and k ", k.desc(), " differ in shape");
  cpu::require_shape(op, "out", out, q.shape());
  for (const Tensor* in : {&q, &k, &v})
    PD_REQUIRE(!cpu::may_overlap(out, *in), op, ": out ", out.desc(), " overlaps an input ", in->desc());
}

// out = softmax(scale·q·kᵀ + bias[h], keys j > i hidden when causal)·v, and lse if defined; bias may be
// undefined. Arguments already checked. A query that sees no key (Skv = 0, or a bias of −inf on every key)
// gets output 0 and lse −inf: an empty softmax sum, which ring attention's merge reads as weight zero.
void run_attention(int threads, const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k,
                   const Tensor& v, float scale, const Tensor& bias, bool causal) {
  const int64_t B = q.size(0), Sq = q.size(1), H = q.size(2), d = q.size(3), Skv = k.size(1);
  const int64_t blocks = (Sq + kQueryBlock - 1) / kQueryBlock;
  const int64_t mq = std::min(kQueryBlock, Sq);
  const bool gather_q = needs_gather(mq, q.stride(1), d), gather_k = needs_gather(Skv, k.stride(1), d),
             gather_v = needs_gather(Skv, v.stride(1), d);
  // Per-thread scratch, allocated here so that running out of memory throws before the parallel region:
  // scores [mq, Skv], P·V [mq, d], and copies of q/k/v for layouts BLAS cannot take.
  const int64_t per_thread = mq * Skv + mq * d + (gather_q ? mq * d : 0) + (gather_k ? Skv * d : 0) +
                             (gather_v ? Skv * d : 0);
  const int nt = int(std::min<int64_t>(threads, std::max<int64_t>(B * H * blocks, 1)));
  std::vector<float> scratch(size_t(nt * per_thread));
  std::vector<double> inv_sums(size_t(nt * mq));
  const float* qb = q.data_as<float>();
  const float* kb = k.data_as<float>();
  const float* vb = v.data_as<float>();
  const float* bb = bias.defined() ? bias.data_as<float>() : nullptr;
  float* ob = out.data_as<float>();
  float* lb = lse.defined() ? lse.data_as<float>() : nullptr;
  cpu::parallel_for_dynamic(nt, B * H * blocks, [&](int64_t task) {
    const int64_t blk = task % blocks, h = (task / blocks) % H, b = task / (blocks * H);
    const int64_t i0 = blk * kQueryBlock, m = std::min(kQueryBlock, Sq - i0);
    float* o = ob + b * out.stride(0) + i0 * out.stride(1) + h * out.stride(2);
    float* l = lb ? lb + b * lse.stride(0) + h * lse.stride(1) + i0 : nullptr;
    // Under the causal mask the block's last query sees keys [0, i0 + m): later keys are neither scored nor
    // multiplied, which halves the work of a square causal attention.
    const int64_t nkv = causal ? std::min(Skv, i0 + m) : Skv;
    if (nkv == 0) {
      for (int64_t i = 0; i < m; ++i) std::fill(o + i * out.stride(1), o + i * out.stride(1) + d, 0.0f);
      if (l) std::fill(l, l + m, -std::numeric_limits<float>::infinity());
      return;
    }
    const int tid = omp_get_thread_num();
    float* scores = scratch.data() + tid * per_thread;  // [m, nkv]
    float* acc = scores + mq * Skv;
    float* gq = acc + mq * d;
    float* gk = gq + (gather_q ? mq * d : 0);
    float* gv = gk + (gather_k ? Skv * d : 0);
    double* inv_sum = inv_sums.data() + tid * mq;
    int64_t ldq, ldk, ldv;
    const float* qm =
        blas_matrix(qb + b * q.stride(0) + i0 * q.stride(1) + h * q.stride(2), m, q.stride(1), d, gq, &ldq);
    const float* km = blas_matrix(kb + b * k.stride(0) + h * k.stride(2), nkv, k.stride(1), d, gk, &ldk);
    const float* vm = blas_matrix(vb + b * v.stride(0) + h * v.stride(2), nkv, v.stride(1), d, gv, &ldv);
    if (d > 0) {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(m), int(nkv), int(d), scale, qm, int(ldq), km,
                  int(ldk), 0.0f, scores, int(nkv));
    } else {
      std::fill(scores, scores + m * nkv, 0.0f);
    }
    for (int64_t i = 0; i < m; ++i) {
      float* s = scores + i * nkv;
      const int64_t seen = causal ? std::min(nkv, i0 + i + 1) : nkv;  // keys [0, seen) are visible
      if (bb) {
        const float* br = bb + h * bias.stride(0) + (i0 + i) * bias.stride(1);
        for (int64_t j = 0; j < seen; ++j) s[j] += br[j];
      }
      const float mx = cpu::row_max(s, seen);  // subtracted before exp: no overflow whatever the logits
      double sum = 0;
      if (mx == -std::numeric_limits<float>::infinity()) {
        std::fill(s, s + seen, 0.0f);  // every key masked: e^(−inf − (−inf)) would be NaN
      } else {
        sum = cpu::exp_and_sum(s, seen, mx);
      }
      std::fill(s + seen, s + nkv, 0.0f);  // hidden keys weigh nothing in P·V
      inv_sum[i] = sum > 0 ? 1.0 / sum : 0.0;
      if (l) l[i] = float(double(mx) + std::log(sum));
    }
    if (d == 0) return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(m), int(d), int(nkv), 1.0f, scores, int(nkv), vm,
                int(ldv), 0.0f, acc, int(d));
    for (int64_t i = 0; i < m; ++i) {
      float* orow = o + i * out.stride(1);
      const float* a = acc + i * d;
      for (int64_t c = 0; c < d; ++c) orow[c] = float(a[c] * inv_sum[i]);
    }
  });
}

}  // namespace

void CpuBackend::attention(const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
                           float scale) {
  const char* op = "attention";
  check_qkv(op, out, q, k, v);
  const int64_t B = q.size(0), Sq = q.size(1), H = q.size(2);
  if (lse.defined()) {
    cpu::require_f32_rows(op, "lse", lse);
    cpu::require_shape(op, "lse", lse, {B, H, Sq});
    for (const Tensor* in : {&q, &k, &v})
      PD_REQUIRE(!cpu::may_overlap(lse, *in), op, ": lse ", lse.desc(), " overlaps an input ", in->desc());
    PD_REQUIRE(!cpu::may_overlap(out, lse), op, ": out ", out.desc(), " overlaps lse ", lse.desc());
  }
  if (out.numel() == 0 && (!lse.defined() || lse.numel() == 0)) return;
  run_attention(threads_, out, lse, q, k, v, scale, Tensor(), false);
}

void CpuBackend::attention_biased(const Tensor& out, const Tensor& q, const Tensor& k, const Tensor& v, float scale,
                                  const Tensor& bias, bool causal) {
  const char* op = "attention_biased";
  check_qkv(op, out, q, k, v);
  const int64_t Sq = q.size(1), H = q.size(2), Skv = k.size(1);
  if (bias.defined()) {
    cpu::require_f32_rows(op, "bias", bias);
    PD_REQUIRE(bias.shape() == Shape({H, Sq, Skv}), op, ": bias is ", bias.desc(), ", expected [H, Sq, Skv] = ",
               shape_str({H, Sq, Skv}), " for q ", q.desc(), " and k ", k.desc());
    PD_REQUIRE(!cpu::may_overlap(out, bias), op, ": out ", out.desc(), " overlaps bias ", bias.desc());
  }
  if (out.numel() == 0) return;
  run_attention(threads_, out, Tensor(), q, k, v, scale, bias, causal);
}

}  // namespace paradit
