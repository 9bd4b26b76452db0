#include "backend/cuda/matmul.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <vector>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/lt_util.h"
#include "paradit/core/status.h"

namespace paradit::cuda {

struct LtMatmul::Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
  std::vector<LtAlgo> candidates;  // the heuristic's, best guess first
  bool supported = false;
  bool tuned = false;  // algo chosen for good (timed, or nothing to time)

  Plan() = default;
  Plan(const Plan&) = delete;
  Plan& operator=(const Plan&) = delete;
  ~Plan() {
    // Destruction cannot fail in a way we could act on; errors are ignored on purpose.
    if (c) cublasLtMatrixLayoutDestroy(c);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (desc) cublasLtMatmulDescDestroy(desc);
  }
};

namespace {

const char* epilogue_name(Epilogue ep) { return ep == Epilogue::kGeluTanh ? "gelu_tanh" : "none"; }

}  // namespace

bool LtMatmul::Key::operator==(const Key& o) const {
  return p.rows == o.p.rows && p.n == o.p.n && p.k == o.p.k && p.ldx == o.p.ldx && p.ldy == o.p.ldy && p.ldw == o.p.ldw &&
         p.batch == o.p.batch && p.batch_stride_x == o.p.batch_stride_x && p.batch_stride_y == o.p.batch_stride_y &&
         ep == o.ep && has_bias == o.has_bias && align_x == o.align_x && align_w == o.align_w &&
         align_y == o.align_y && align_bias == o.align_bias;
}

size_t LtMatmul::KeyHash::operator()(const Key& k) const {
  size_t h = 0;
  const auto mix = [&h](uint64_t v) { h ^= std::hash<uint64_t>{}(v) + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2); };
  for (int64_t v : {k.p.rows, k.p.n, k.p.k, k.p.ldx, k.p.ldy, k.p.ldw, k.p.batch, k.p.batch_stride_x, k.p.batch_stride_y})
    mix(uint64_t(v));
  mix(uint64_t(k.ep) | uint64_t(k.has_bias) << 8);
  mix(uint64_t(k.align_x) | uint64_t(k.align_w) << 16 | uint64_t(k.align_y) << 32 | uint64_t(k.align_bias) << 48);
  return h;
}

LtMatmul::LtMatmul(Allocator& alloc, size_t workspace_bytes, bool autotune)
    : alloc_(alloc), workspace_bytes_(workspace_bytes), autotune_(autotune) {
  PD_CUBLAS_CHECK(cublasLtCreate(&handle_));
  try {
    workspace_ = alloc_.allocate(workspace_bytes_);
  } catch (...) {
    cublasLtDestroy(handle_);
    throw;
  }
}

LtMatmul::~LtMatmul() {
  cache_.clear();
  if (workspace_) alloc_.deallocate(workspace_);
  if (handle_) cublasLtDestroy(handle_);
}

LtMatmul::Key LtMatmul::make_key(const GemmProblem& p, Epilogue ep, const void* y, const void* x, const void* w,
                                 const void* bias) const {
  Key k{};
  k.p = p;
  // Strides that cannot matter are normalised so equal problems share one plan.
  if (k.p.batch <= 1) k.p.batch_stride_x = k.p.batch_stride_y = 0;
  k.ep = ep;
  k.has_bias = bias != nullptr;
  k.align_x = alignment_of(x, p.batch, p.batch_stride_x * 2);
  k.align_w = alignment_of(w, 1, 0);
  k.align_y = alignment_of(y, p.batch, p.batch_stride_y * 2);
  k.align_bias = bias ? alignment_of(bias, 1, 0) : 0;
  return k;
}

LtMatmul::Plan* LtMatmul::plan_for(const Key& key, const void* bias) {
  auto it = cache_.find(key);
  if (it != cache_.end()) return it->second->supported ? it->second.get() : nullptr;

  auto plan = std::make_unique<Plan>();
  const GemmProblem& p = key.p;
  PD_CUBLAS_CHECK(cublasLtMatmulDescCreate(&plan->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  set_desc(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA, int32_t(CUBLAS_OP_T), "TRANSA");
  set_desc(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB, int32_t(CUBLAS_OP_N), "TRANSB");
  cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_DEFAULT;
  if (key.ep == Epilogue::kGeluTanh)
    epi = key.has_bias ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_GELU;
  else if (key.has_bias)
    epi = CUBLASLT_EPILOGUE_BIAS;
  set_desc(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, uint32_t(epi), "EPILOGUE");
  if (key.has_bias) {
    // The heuristic reads the bias pointer's alignment, so it is set before the query (and again per call).
    set_desc(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, bias, "BIAS_POINTER");
  }

  // Column-major views: A = w (K × N, ld ldw), B = x (K × rows, ld ldx), C = D = y (N × rows, ld ldy).
  PD_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->a, CUDA_R_16BF, uint64_t(p.k), uint64_t(p.n), p.ldw));
  PD_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->b, CUDA_R_16BF, uint64_t(p.k), uint64_t(p.rows), p.ldx));
  PD_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->c, CUDA_R_16BF, uint64_t(p.n), uint64_t(p.rows), p.ldy));
  if (p.batch > 1) {
    const int32_t count = int32_t(p.batch);
    for (auto [layout, stride] : {std::pair{plan->a, int64_t(0)}, std::pair{plan->b, p.batch_stride_x},
                                  std::pair{plan->c, p.batch_stride_y}}) {
      set_layout(layout, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, count, "BATCH_COUNT");
      set_layout(layout, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, stride, "STRIDED_BATCH_OFFSET");
    }
  }

  plan->candidates =
      lt_algos(handle_, plan->desc, plan->a, plan->b, plan->c, key.align_w, key.align_x, key.align_y, workspace_bytes_);
  if (!plan->candidates.empty()) {
    plan->algo = plan->candidates.front().algo;
    plan->supported = true;
    plan->tuned = !autotune_ || plan->candidates.size() == 1;
  }
  Plan* raw = plan.get();
  cache_.emplace(key, std::move(plan));
  return raw->supported ? raw : nullptr;
}

namespace {

// Two timing events, destroyed however the timing ends.
struct EventPair {
  cudaEvent_t start = nullptr, stop = nullptr;
  EventPair() {
    PD_CUDA_CHECK(cudaEventCreate(&start));
    if (cudaEventCreate(&stop) != cudaSuccess) {
      cudaEventDestroy(start);
      PD_THROW(kInternal, "cudaEventCreate failed while timing GEMM algorithms");
    }
  }
  ~EventPair() {
    cudaEventDestroy(stop);
    cudaEventDestroy(start);
  }
  EventPair(const EventPair&) = delete;
  EventPair& operator=(const EventPair&) = delete;
};

// Rounds over the candidates (the best of each candidate's rounds counts, so a clock that sags as the card heats
// weighs on all alike) and timed calls a round, after one untimed call.
constexpr int kTuneRounds = 2, kTuneCalls = 3;

}  // namespace

void LtMatmul::tune(Plan& plan, void* y, const void* x, const void* w, cudaStream_t stream) {
  plan.tuned = true;
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  PD_CUDA_CHECK(cudaStreamIsCapturing(stream, &capture));
  if (capture != cudaStreamCaptureStatusNone) return;
  EventPair ev;
  const float alpha = 1.0f, beta = 0.0f;
  const auto run = [&](const cublasLtMatmulAlgo_t& algo) {
    return cublasLtMatmul(handle_, plan.desc, &alpha, w, plan.a, x, plan.b, &beta, y, plan.c, y, plan.c, &algo,
                          workspace_, workspace_bytes_, stream);
  };
  std::vector<float> best(plan.candidates.size(), std::numeric_limits<float>::infinity());
  for (int round = 0; round < kTuneRounds; ++round) {
    for (size_t i = 0; i < plan.candidates.size(); ++i) {
      const cublasLtMatmulAlgo_t& algo = plan.candidates[i].algo;
      if (run(algo) != CUBLAS_STATUS_SUCCESS) continue;  // a candidate that does not run is not chosen
      PD_CUDA_CHECK(cudaEventRecord(ev.start, stream));
      for (int c = 0; c < kTuneCalls; ++c) PD_CUBLAS_CHECK(run(algo));
      PD_CUDA_CHECK(cudaEventRecord(ev.stop, stream));
      PD_CUDA_CHECK(cudaEventSynchronize(ev.stop));
      float ms = 0.0f;
      PD_CUDA_CHECK(cudaEventElapsedTime(&ms, ev.start, ev.stop));
      best[i] = std::min(best[i], ms);
    }
  }
  const size_t pick = size_t(std::min_element(best.begin(), best.end()) - best.begin());
  if (std::isfinite(best[pick])) plan.algo = plan.candidates[pick].algo;
}

void LtMatmul::linear(const GemmProblem& p, void* y, const void* x, const void* w, const void* bias, Epilogue ep,
                      bool accumulate, cudaStream_t stream) {
  const Key key = make_key(p, ep, y, x, w, bias);
  Plan* plan = plan_for(key, bias);
  if (!plan)
    PD_THROW(kUnimplemented, "linear: cuBLASLt offers no bf16 algorithm for rows ", p.rows, ", N ", p.n, ", K ", p.k,
             ", ldx ", p.ldx, ", ldy ", p.ldy, ", batch ", p.batch, " (strides ", p.batch_stride_x, "/",
             p.batch_stride_y, "), epilogue ", epilogue_name(ep), bias ? " + bias" : "", ", alignments x/w/y ",
             key.align_x, "/", key.align_w, "/", key.align_y, " bytes");
  if (bias) set_desc(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, bias, "BIAS_POINTER");
  if (!plan->tuned && !accumulate) tune(*plan, y, x, w, stream);
  const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
  PD_CUBLAS_CHECK(cublasLtMatmul(handle_, plan->desc, &alpha, w, plan->a, x, plan->b, &beta, y, plan->c, y, plan->c,
                                 &plan->algo, workspace_, workspace_bytes_, stream));
}

}  // namespace paradit::cuda
