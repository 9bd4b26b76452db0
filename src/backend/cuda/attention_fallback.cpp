#include "backend/cuda/attention_fallback.h"

#include <algorithm>
#include <functional>
#include <limits>

#include "backend/cuda/attention_softmax.h"
#include "backend/cuda/copy.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/lt_util.h"
#include "backend/cuda/scratch.h"
#include "paradit/core/status.h"

namespace paradit::cuda {

struct GemmAttention::Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulAlgo_t algo{};
  size_t workspace = 0;
  bool supported = false;

  Plan() = default;
  Plan(const Plan&) = delete;
  Plan& operator=(const Plan&) = delete;
  ~Plan() {
    // Destruction cannot fail in a way we could act on; errors are ignored on purpose.
    if (d) cublasLtMatrixLayoutDestroy(d);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (desc) cublasLtMatmulDescDestroy(desc);
  }
};

namespace {

constexpr size_t kMaxWorkspace = size_t(32) << 20;

// The ld of a matrix of `rows` row-major rows of `width` elements with row stride `stride`: any value ≥ width
// works when there is a single row.
int64_t ld_of(int64_t stride, int64_t rows, int64_t width) { return rows <= 1 ? std::max(stride, width) : stride; }

size_t dtype_bytes(int32_t t) { return t == int32_t(CUDA_R_32F) ? 4 : 2; }

}  // namespace

bool GemmAttention::Gemm::operator==(const Gemm& o) const {
  return trans_a == o.trans_a && trans_b == o.trans_b && d_type == o.d_type && m == o.m && n == o.n && k == o.k &&
         lda == o.lda && ldb == o.ldb && ldd == o.ldd && batch == o.batch && stride_a == o.stride_a &&
         stride_b == o.stride_b && stride_d == o.stride_d && align_a == o.align_a && align_b == o.align_b &&
         align_d == o.align_d;
}

size_t GemmAttention::GemmHash::operator()(const Gemm& g) const {
  size_t h = 0;
  const auto mix = [&h](uint64_t v) { h ^= std::hash<uint64_t>{}(v) + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2); };
  for (int64_t v : {g.m, g.n, g.k, g.lda, g.ldb, g.ldd, g.batch, g.stride_a, g.stride_b, g.stride_d}) mix(uint64_t(v));
  mix(uint64_t(uint32_t(g.trans_a)) | uint64_t(uint32_t(g.trans_b)) << 8 | uint64_t(uint32_t(g.d_type)) << 16);
  mix(uint64_t(g.align_a) | uint64_t(g.align_b) << 16 | uint64_t(g.align_d) << 32);
  return h;
}

GemmAttention::GemmAttention(cudaStream_t stream) : stream_(stream) { PD_CUBLAS_CHECK(cublasLtCreate(&handle_)); }

GemmAttention::~GemmAttention() {
  cache_.clear();
  if (handle_) cublasLtDestroy(handle_);
}

GemmAttention::Plan* GemmAttention::plan_for(const Gemm& g) {
  auto it = cache_.find(g);
  if (it != cache_.end()) return it->second->supported ? it->second.get() : nullptr;

  auto plan = std::make_unique<Plan>();
  PD_CUBLAS_CHECK(cublasLtMatmulDescCreate(&plan->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  set_desc(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA, int32_t(g.trans_a), "TRANSA");
  set_desc(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB, int32_t(g.trans_b), "TRANSB");
  // Column-major storage: op(A) = Aᵀ stores A as k × m, op(B) = Bᵀ stores B as n × k.
  const bool ta = g.trans_a == int32_t(CUBLAS_OP_T), tb = g.trans_b == int32_t(CUBLAS_OP_T);
  PD_CUBLAS_CHECK(
      cublasLtMatrixLayoutCreate(&plan->a, CUDA_R_16BF, uint64_t(ta ? g.k : g.m), uint64_t(ta ? g.m : g.k), g.lda));
  PD_CUBLAS_CHECK(
      cublasLtMatrixLayoutCreate(&plan->b, CUDA_R_16BF, uint64_t(tb ? g.n : g.k), uint64_t(tb ? g.k : g.n), g.ldb));
  PD_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->d, cudaDataType_t(g.d_type), uint64_t(g.m), uint64_t(g.n), g.ldd));
  if (g.batch > 1) {
    const int32_t count = int32_t(g.batch);
    for (auto [layout, stride] :
         {std::pair{plan->a, g.stride_a}, std::pair{plan->b, g.stride_b}, std::pair{plan->d, g.stride_d}}) {
      set_layout(layout, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, count, "BATCH_COUNT");
      set_layout(layout, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, stride, "STRIDED_BATCH_OFFSET");
    }
  }

  if (const auto choice =
          lt_first_algo(handle_, plan->desc, plan->a, plan->b, plan->d, g.align_a, g.align_b, g.align_d, kMaxWorkspace)) {
    plan->algo = choice->algo;
    plan->workspace = choice->workspace;
    plan->supported = true;
  }
  Plan* raw = plan.get();
  cache_.emplace(g, std::move(plan));
  return raw->supported ? raw : nullptr;
}

void GemmAttention::gemm(Gemm g, const void* a, const void* b, void* d, float alpha, Allocator& alloc) {
  if (g.batch <= 1) g.stride_a = g.stride_b = g.stride_d = 0;  // equal problems share one plan
  g.align_a = alignment_of(a, g.batch, g.stride_a * 2);
  g.align_b = alignment_of(b, g.batch, g.stride_b * 2);
  g.align_d = alignment_of(d, g.batch, g.stride_d * int64_t(dtype_bytes(g.d_type)));
  Plan* plan = plan_for(g);
  if (!plan && g.batch > 1) {
    // No batched kernel for these strides: one GEMM per head.
    Gemm one = g;
    one.batch = 1;
    for (int64_t i = 0; i < g.batch; ++i)
      gemm(one, static_cast<const char*>(a) + i * g.stride_a * 2, static_cast<const char*>(b) + i * g.stride_b * 2,
           static_cast<char*>(d) + i * g.stride_d * int64_t(dtype_bytes(g.d_type)), alpha, alloc);
    return;
  }
  if (!plan)
    PD_THROW(kUnimplemented, "attention: cuBLASLt offers no algorithm for the ", g.trans_a == CUBLAS_OP_T ? "T" : "N",
             g.trans_b == CUBLAS_OP_T ? "T" : "N", " GEMM m ", g.m, ", n ", g.n, ", k ", g.k, ", lda/ldb/ldd ", g.lda,
             "/", g.ldb, "/", g.ldd, ", batch ", g.batch, ", ", g.d_type == CUDA_R_32F ? "f32" : "bf16",
             " output, alignments ", g.align_a, "/", g.align_b, "/", g.align_d, " bytes");
  Scratch ws(alloc, plan->workspace);
  const float beta = 0.0f;
  PD_CUBLAS_CHECK(cublasLtMatmul(handle_, plan->desc, &alpha, a, plan->a, b, plan->b, &beta, d, plan->d, d, plan->d,
                                 &plan->algo, ws.get(), plan->workspace, stream_));
}

void GemmAttention::run(const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
                        float scale, const Tensor& bias, bool causal, Allocator& alloc) {
  const int64_t B = q.size(0), Sq = q.size(1), H = q.size(2), d = q.size(3), Skv = k.size(1);
  if (out.numel() == 0) return;
  if (Skv == 0) {  // no keys: an empty softmax sum — out 0, lse −∞
    launch_fill(out, 0.0f, stream_);
    if (lse.defined()) launch_fill(lse, -std::numeric_limits<float>::infinity(), stream_);
    return;
  }
  PD_REQUIRE(H <= 65535, "attention: ", H, " heads is above the GEMM path's limit of 65535");
  for (const Tensor* t : {&q, &k, &v, &out})
    PD_REQUIRE(t->size(1) <= 1 || t->stride(1) >= d, "attention: rows of ", t->desc(), " (strides ",
               shape_str(t->strides()), ") overlap");

  // Score rows padded to 8 elements: 32-byte aligned f32 rows and 16-byte aligned bf16 rows.
  const int64_t ld = (Skv + 7) / 8 * 8;
  int64_t qb = std::max<int64_t>(1, kScratchBytes / (H * ld * 6));
  if (qb >= Sq)
    qb = Sq;
  else if (qb >= 64)
    qb = qb / 64 * 64;  // whole GEMM tiles
  const int64_t head_stride = qb * ld;
  Scratch scores(alloc, size_t(H * head_stride) * sizeof(float));
  Scratch probs(alloc, size_t(H * head_stride) * 2);

  // Byte pointers: element offsets × 2 (bf16).
  const char* qp = static_cast<const char*>(q.data());
  const char* kp = static_cast<const char*>(k.data());
  const char* vp = static_cast<const char*>(v.data());
  char* op = static_cast<char*>(out.data());
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t i0 = 0; i0 < Sq; i0 += qb) {
      const int64_t rows = std::min(qb, Sq - i0);
      const int64_t nkv = causal ? std::min(Skv, i0 + rows) : Skv;

      // scores[h] (nkv × rows, column-major) = scale·K[h]ᵀ·Q[h]: row i of the row-major [rows, ld] block.
      Gemm g1;
      g1.trans_a = CUBLAS_OP_T;
      g1.trans_b = CUBLAS_OP_N;
      g1.d_type = CUDA_R_32F;
      g1.m = nkv;
      g1.n = rows;
      g1.k = d;
      g1.lda = ld_of(k.stride(1), nkv, d);
      g1.ldb = ld_of(q.stride(1), rows, d);
      g1.ldd = ld;
      g1.batch = H;
      g1.stride_a = k.stride(2);
      g1.stride_b = q.stride(2);
      g1.stride_d = head_stride;
      gemm(g1, kp + 2 * (b * k.stride(0)), qp + 2 * (b * q.stride(0) + i0 * q.stride(1)), scores.get(), scale, alloc);

      SoftmaxProblem sp;
      sp.scores = scores.as<float>();
      sp.probs = probs.get();
      sp.heads = H;
      sp.rows = rows;
      sp.nkv = nkv;
      sp.ld = ld;
      sp.head_stride = head_stride;
      sp.i0 = i0;
      sp.causal = causal;
      if (bias.defined()) {
        sp.bias = bias.data_as<float>() + i0 * bias.stride(1);
        sp.bias_h = bias.stride(0);
        sp.bias_q = bias.stride(1);
        sp.bias_k = bias.stride(2);
      }
      if (lse.defined()) {
        sp.lse = lse.data_as<float>() + b * lse.stride(0) + i0 * lse.stride(2);
        sp.lse_h = lse.stride(1);
        sp.lse_q = lse.stride(2);
      }
      launch_attention_softmax(sp, stream_);

      // out[h] (d × rows, column-major) = V[h] (d × nkv) · P[h] (nkv × rows).
      Gemm g2;
      g2.trans_a = CUBLAS_OP_N;
      g2.trans_b = CUBLAS_OP_N;
      g2.d_type = CUDA_R_16BF;
      g2.m = d;
      g2.n = rows;
      g2.k = nkv;
      g2.lda = ld_of(v.stride(1), nkv, d);
      g2.ldb = ld;
      g2.ldd = ld_of(out.stride(1), rows, d);
      g2.batch = H;
      g2.stride_a = v.stride(2);
      g2.stride_b = head_stride;
      g2.stride_d = out.stride(2);
      gemm(g2, vp + 2 * (b * v.stride(0)), probs.get(), op + 2 * (b * out.stride(0) + i0 * out.stride(1)), 1.0f, alloc);
    }
  }
}

}  // namespace paradit::cuda
