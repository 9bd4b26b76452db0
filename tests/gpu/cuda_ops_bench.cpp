// Op-level benchmark of the CUDA backend at FLUX.1-dev's 1024² shapes (4608 tokens, hidden 3072, 24 heads ×
// 128): the GEMMs (TFLOP/s), attention (TFLOP/s, counted as 4·S²·d·H), and the memory-bound kernels (GB/s of
// compulsory traffic). Not a ctest: run it by hand on the GPU machine, `cuda_ops_bench [iterations]`.
//
// Each figure is the mean over `iterations` back-to-back calls after warm-up, timed on the host around a
// synchronize (calls are asynchronous, so launch overhead overlaps the previous kernel).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <cublasLt.h>
#include <cuda_runtime.h>

#include "paradit/backend/backend.h"
#include "paradit/backend/cuda_backend.h"
#include "paradit/core/status.h"

namespace paradit {
namespace {

int g_iters = 50;

double time_us(Backend& b, const std::function<void()>& fn) {
  for (int i = 0; i < 3; ++i) fn();
  b.synchronize();
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < g_iters; ++i) fn();
  b.synchronize();
  const auto t1 = std::chrono::steady_clock::now();
  return std::chrono::duration<double, std::micro>(t1 - t0).count() / g_iters;
}

void report_flops(const char* what, double us, double flop) {
  std::printf("%-58s %9.1f us  %7.1f TFLOP/s\n", what, us, flop / us * 1e-6);
}
void report_bytes(const char* what, double us, double bytes) {
  std::printf("%-58s %9.1f us  %7.0f GB/s\n", what, us, bytes / us * 1e-3);
}

Tensor random(Backend& b, const Shape& shape, uint64_t seed, float stddev = 1.0f) {
  Tensor t = b.empty(shape);
  b.fill_random(t, seed, stddev);
  return t;
}

void bench_gemms(Backend& b, const char* label) {
  const int64_t M = 4608, D = 3072;
  // Buffers laid out as the model lays them out: the [attention | MLP] concat of a single block is [M, 5D].
  const Tensor x = random(b, {1, M, D}, 1);
  const Tensor cat = random(b, {1, M, 5 * D}, 2);
  const Tensor qkv = b.empty({1, M, 3 * D});
  const Tensor z = random(b, {1, M, D}, 3);
  const Tensor mod = random(b, {1, 6 * D}, 4, 0.1f);
  const Tensor gate = mod.slice(1, 2 * D, D);

  struct Gemm {
    const char* name;
    int64_t K, N;
    Epilogue ep;
  };
  for (const Gemm g : {Gemm{"linear K3072 N3072 +bias", D, D, Epilogue::kNone},
                       Gemm{"linear K3072 N9216 +bias (qkv)", D, 3 * D, Epilogue::kNone},
                       Gemm{"linear K3072 N12288 +bias+gelu (mlp_in -> concat)", D, 4 * D, Epilogue::kGeluTanh},
                       Gemm{"linear K15360 N3072 +bias", 5 * D, D, Epilogue::kNone}}) {
    const Tensor w = random(b, {g.N, g.K}, 10, 0.02f);
    const Tensor bias = random(b, {g.N}, 11, 0.02f);
    const Tensor in = g.K == D ? x : cat;
    const Tensor out = g.N == 3 * D ? qkv : g.N == 4 * D ? cat.slice(2, D, 4 * D) : b.empty({1, M, g.N});
    const double us = time_us(b, [&] { b.linear(out, in, w, bias, g.ep); });
    report_flops(detail::concat(label, g.name).c_str(), us, 2.0 * M * g.N * g.K);
  }
  {
    // The adaLN modulation GEMM: one row, so bound by reading the [6D, D] weight.
    const Tensor w = random(b, {6 * D, D}, 14, 0.02f), bias = random(b, {6 * D}, 15, 0.02f);
    const Tensor temb = random(b, {1, D}, 16), out = b.empty({1, 6 * D});
    const double us = time_us(b, [&] { b.linear(out, temb, w, bias, Epilogue::kNone); });
    report_bytes(detail::concat(label, "linear M1 K3072 N18432 (adaLN modulation)").c_str(), us, 2.0 * 6 * D * D);
  }
  {
    // A block's deferred residual update and the next LayerNorm in one pass: reads delta and z, writes z and zn.
    const Tensor delta = random(b, {1, M, D}, 12), zn = b.empty({1, M, D});
    const double us = time_us(b, [&] {
      b.gated_add_layer_norm_modulate(zn, z, delta, gate, mod.slice(1, 0, D), mod.slice(1, D, D), 1e-6f);
    });
    report_bytes(detail::concat(label, "gated_add_layer_norm_modulate 4608x3072").c_str(), us, 2.0 * 4 * M * D);
  }
}

void bench_attention(Backend& b) {
  for (const int64_t S : {int64_t(4608), int64_t(16896)}) {  // 1024² and 2048²
    const int64_t H = 24, d = 128, D = H * d;
    const Tensor qkv = random(b, {1, S, 3 * D}, 20);
    const Tensor cat = b.empty({1, S, 5 * D});
    const auto heads = [&](const Tensor& t, int64_t i) { return t.slice(2, i * D, D).unflatten(2, H, d); };
    const Tensor lse = b.empty({1, H, S}, DType::kF32);
    const float scale = float(1.0 / std::sqrt(double(d)));
    const double flop = 4.0 * double(S) * S * d * H;
    const std::string what = "attention B1 H24 S" + std::to_string(S) + " d128 (packed qkv views)";
    double us =
        time_us(b, [&] { b.attention(heads(cat, 0), Tensor(), heads(qkv, 0), heads(qkv, 1), heads(qkv, 2), scale); });
    report_flops(what.c_str(), us, flop);
    us = time_us(b, [&] { b.attention(heads(cat, 0), lse, heads(qkv, 0), heads(qkv, 1), heads(qkv, 2), scale); });
    report_flops("  + lse", us, flop);
  }
}

// The attention calls of a 2048² forward (512 + 16384 tokens) split over 4 GPUs: Ulysses' (all tokens, a quarter
// of the heads), Ring's (a quarter of the queries against each quarter of the keys, with the statistics, then the
// merge) and the gathered Ring's (the own quarter, then the other three in one call). Same FLOPs in each row.
void bench_split_attention(Backend& b) {
  const int64_t S = 16896, Sq = S / 4, H = 24, d = 128;
  const float scale = float(1.0 / std::sqrt(double(d)));
  const auto qkv = [&](int64_t s, int64_t h, uint64_t seed) { return random(b, {1, s, h, d}, seed); };
  const double flop = 4.0 * double(Sq) * S * d * H;  // one rank's share
  {
    const Tensor q = qkv(S, H / 4, 60), k = qkv(S, H / 4, 61), v = qkv(S, H / 4, 62), o = b.empty(q.shape());
    report_flops("2048^2 / 4, Ulysses: S16896 H6", time_us(b, [&] { b.attention(o, Tensor(), q, k, v, scale); }),
                 flop);
  }
  const Tensor q = qkv(Sq, H, 63), k = qkv(S, H, 64), v = qkv(S, H, 65), o = b.empty(q.shape());
  std::vector<Tensor> outs, lses;
  for (int j = 0; j < 4; ++j) {
    outs.push_back(b.empty(q.shape()));
    lses.push_back(b.empty({1, H, Sq}, DType::kF32));
  }
  const auto block = [&](int64_t start, int64_t len) { return std::pair{k.slice(1, start, len), v.slice(1, start, len)}; };
  report_flops("2048^2 / 4, Ring pass: 4 x (Sq4224 Skv4224 + lse), merge", time_us(b, [&] {
                 for (int j = 0; j < 4; ++j) {
                   const auto [kb, vb] = block(j * Sq, Sq);
                   b.attention(outs[size_t(j)], lses[size_t(j)], q, kb, vb, scale);
                 }
                 b.lse_merge(o, Tensor(), outs, lses);
               }),
               flop);
  report_flops("  its 4 attention calls alone", time_us(b, [&] {
                 for (int j = 0; j < 4; ++j) {
                   const auto [kb, vb] = block(j * Sq, Sq);
                   b.attention(outs[size_t(j)], lses[size_t(j)], q, kb, vb, scale);
                 }
               }),
               flop);
  report_flops("2048^2 / 4, Ring gather: Skv4224 + Skv12672 (+ lse), merge", time_us(b, [&] {
                 const auto [k0, v0] = block(0, Sq);
                 const auto [k1, v1] = block(Sq, 3 * Sq);
                 b.attention(outs[0], lses[0], q, k0, v0, scale);
                 b.attention(outs[1], lses[1], q, k1, v1, scale);
                 b.lse_merge(o, Tensor(), {outs[0], outs[1]}, {lses[0], lses[1]});
               }),
               flop);
  report_flops("2048^2 / 4, one call: Sq4224 Skv16896", time_us(b, [&] { b.attention(o, Tensor(), q, k, v, scale); }),
               flop);
}

void bench_memory_bound(Backend& b) {
  const int64_t M = 4608, D = 3072, H = 24, d = 128;
  const Tensor x = random(b, {1, M, D}, 30);
  const Tensor y = b.empty({1, M, D});
  const Tensor mod = random(b, {1, 6 * D}, 31, 0.1f);
  const double act = double(M) * D * 2;  // bytes of one [M, D] bf16 activation
  double us = time_us(b, [&] { b.layer_norm_modulate(y, x, mod.slice(1, 0, D), mod.slice(1, D, D), 1e-6f); });
  report_bytes("layer_norm_modulate [4608, 3072]", us, 2 * act);

  const Tensor qkv = random(b, {1, M, 3 * D}, 32);
  const Tensor w = random(b, {d}, 33);
  const Tensor cos = b.empty({M, d}, DType::kF32), sin = b.empty({M, d}, DType::kF32);
  b.fill_random(cos, 34, 0.5f);
  b.fill_random(sin, 35, 0.5f);
  const Tensor q = qkv.slice(2, 0, D).unflatten(2, H, d);
  us = time_us(b, [&] { b.rms_norm_rope(q, q, w, cos, sin, 1e-6f); });
  report_bytes("rms_norm_rope in place, q of packed qkv [4608, 24, 128]", us, 2 * act);
  const Tensor k = qkv.slice(2, D, D).unflatten(2, H, d), wk = random(b, {d}, 37);
  us = time_us(b, [&] {
    b.rms_norm_rope(q, q, w, cos, sin, 1e-6f);
    b.rms_norm_rope(k, k, wk, cos, sin, 1e-6f);
  });
  report_bytes("rms_norm_rope on q, then on k", us, 4 * act);
  us = time_us(b, [&] { b.qk_norm_rope(q, k, w, wk, cos, sin, 1e-6f); });
  report_bytes("qk_norm_rope, q and k in one pass", us, 4 * act);

  const Tensor h = random(b, {1, M, 4 * D}, 36);
  us = time_us(b, [&] { b.gelu_tanh(h, h); });
  report_bytes("gelu_tanh in place [4608, 12288]", us, 8 * act);
  us = time_us(b, [&] { b.add(y, x, y); });
  report_bytes("add [4608, 3072]", us, 3 * act);
  us = time_us(b, [&] { b.gated_add(y, x, mod.slice(1, 2 * D, D)); });
  report_bytes("gated_add [4608, 3072]", us, 3 * act);
  const Tensor cat = b.empty({1, M, 5 * D});
  us = time_us(b, [&] { b.copy(cat.slice(2, 0, D), x); });
  report_bytes("copy into a column slice [4608, 3072] of [4608, 15360]", us, 2 * act);
  const Tensor x32 = b.empty({1, M, D}, DType::kF32);
  us = time_us(b, [&] { b.copy(x32, x); });
  report_bytes("copy bf16 -> f32 [4608, 3072]", us, 3 * act);
  us = time_us(b, [&] { b.fill_random(y, 1, 1.0f); });
  report_bytes("fill_random bf16 [4608, 3072]", us, act);
}

// One FLUX.1-dev double-stream and one single-stream block at 1024² (512 text + 4096 image tokens), issued op by
// op exactly as the model issues them (src/models/flux/flux_blocks.cpp): the same views, the same GEMM shapes.
// 19 double + 38 single blocks are ≈ 99% of a forward's time, so this projects the forward's latency.
void bench_blocks(Backend& b) {
  const int64_t T = 512, N = 4096, S = T + N, D = 3072, H = 24, d = 128;
  const Tensor z = random(b, {1, S, D}, 40), zn = b.empty({1, S, D}), delta = random(b, {1, S, D}, 44, 0.1f);
  const Tensor qkv = b.empty({1, S, 3 * D}), cat = b.empty({1, S, 5 * D});
  const Tensor mod_img = b.empty({1, 6 * D}), mod_txt = b.empty({1, 6 * D});
  const Tensor temb = random(b, {1, D}, 41);
  const Tensor cos = b.empty({S, d}, DType::kF32), sin = b.empty({S, d}, DType::kF32);
  b.fill_random(cos, 42, 0.5f);
  b.fill_random(sin, 43, 0.5f);
  uint64_t seed = 100;
  const auto weight = [&](int64_t n, int64_t k) { return random(b, {n, k}, seed++, 0.02f); };
  const auto bias = [&](int64_t n) { return random(b, {n}, seed++, 0.02f); };
  struct StreamW {
    Tensor mod_w, mod_b, qkv_w, qkv_b, qn, kn, proj_w, proj_b, in_w, in_b, out_w, out_b;
  };
  const auto stream_weights = [&] {
    return StreamW{weight(6 * D, D), bias(6 * D), weight(3 * D, D), bias(3 * D), random(b, {d}, seed++),
                   random(b, {d}, seed++), weight(D, D), bias(D), weight(4 * D, D), bias(4 * D), weight(D, 4 * D),
                   bias(D)};
  };
  const StreamW txt = stream_weights(), img = stream_weights();
  const auto chunk = [](const Tensor& t, int64_t i, int64_t w) { return t.slice(t.dim() - 1, i * w, w); };
  const auto rows = [](const Tensor& t, int64_t start, int64_t len) { return t.slice(1, start, len); };
  const auto heads = [&](const Tensor& t) { return t.unflatten(2, H, d); };
  const float scale = float(1.0 / std::sqrt(double(d)));

  const auto qk_norm_rope = [&](int64_t start, int64_t len, const Tensor& qn, const Tensor& kn) {
    const Tensor r = rows(qkv, start, len);
    const Tensor q = heads(chunk(r, 0, D)), k = heads(chunk(r, 1, D));
    b.qk_norm_rope(q, k, qn, kn, cos.slice(0, start, len), sin.slice(0, start, len), 1e-6f);
  };
  const auto attention = [&] {
    b.attention(heads(chunk(cat, 0, D)), Tensor(), heads(chunk(qkv, 0, D)), heads(chunk(qkv, 1, D)),
                heads(chunk(qkv, 2, D)), scale);
  };
  struct Stream {
    const StreamW& w;
    const Tensor& mod;
    int64_t start, len;
  };
  const Stream streams[2] = {{txt, mod_txt, 0, T}, {img, mod_img, T, N}};
  const auto double_block = [&] {
    for (const Stream& s : streams) {
      b.linear(s.mod, temb, s.w.mod_w, s.w.mod_b, Epilogue::kNone);
      // The previous block's MLP update applied by this LayerNorm (its gate: a chunk of the other set).
      b.gated_add_layer_norm_modulate(rows(zn, s.start, s.len), rows(z, s.start, s.len), rows(delta, s.start, s.len),
                                      chunk(s.mod, 5, D), chunk(s.mod, 0, D), chunk(s.mod, 1, D), 1e-6f);
      b.linear(rows(qkv, s.start, s.len), rows(zn, s.start, s.len), s.w.qkv_w, s.w.qkv_b, Epilogue::kNone);
      qk_norm_rope(s.start, s.len, s.w.qn, s.w.kn);
    }
    attention();
    const Tensor attn = chunk(cat, 0, D), hidden = cat.slice(2, D, 4 * D);
    for (const Stream& s : streams) {
      b.linear(rows(delta, s.start, s.len), rows(attn, s.start, s.len), s.w.proj_w, s.w.proj_b, Epilogue::kNone);
      b.gated_add_layer_norm_modulate(rows(zn, s.start, s.len), rows(z, s.start, s.len), rows(delta, s.start, s.len),
                                      chunk(s.mod, 2, D), chunk(s.mod, 3, D), chunk(s.mod, 4, D), 1e-6f);
      b.linear(rows(hidden, s.start, s.len), rows(zn, s.start, s.len), s.w.in_w, s.w.in_b, Epilogue::kGeluTanh);
      b.linear(rows(delta, s.start, s.len), rows(hidden, s.start, s.len), s.w.out_w, s.w.out_b, Epilogue::kNone);
    }
  };
  const Tensor s_mod_w = weight(3 * D, D), s_mod_b = bias(3 * D), s_qkv_w = weight(3 * D, D), s_qkv_b = bias(3 * D);
  const Tensor s_in_w = weight(4 * D, D), s_in_b = bias(4 * D), s_out_w = weight(D, 5 * D), s_out_b = bias(D);
  const Tensor s_qn = random(b, {d}, seed++), s_kn = random(b, {d}, seed++);
  const auto single_block = [&] {
    const Tensor mod = mod_img.slice(1, 0, 3 * D);
    b.linear(mod, temb, s_mod_w, s_mod_b, Epilogue::kNone);
    b.gated_add_layer_norm_modulate(zn, z, delta, chunk(mod, 2, D), chunk(mod, 0, D), chunk(mod, 1, D), 1e-6f);
    b.linear(qkv, zn, s_qkv_w, s_qkv_b, Epilogue::kNone);
    b.linear(cat.slice(2, D, 4 * D), zn, s_in_w, s_in_b, Epilogue::kGeluTanh);
    qk_norm_rope(0, S, s_qn, s_kn);
    attention();
    b.linear(delta, cat, s_out_w, s_out_b, Epilogue::kNone);
  };
  const double t_double = time_us(b, double_block), t_single = time_us(b, single_block);
  // FLOPs per block: GEMMs 2·M·N·K over both streams, attention 4·S²·D.
  const double att = 4.0 * double(S) * S * D;
  const double f_double = 2.0 * S * D * D * (3 + 1 + 4 + 4) + 2.0 * 6 * D * D * 2 + att;
  const double f_single = 2.0 * S * D * D * (3 + 4 + 5) + 2.0 * 3 * D * D + att;
  report_flops("FLUX double-stream block (512 + 4096 tokens)", t_double, f_double);
  report_flops("FLUX single-stream block (4608 tokens)", t_single, f_single);
  const double forward_ms = (19 * t_double + 38 * t_single) * 1e-3;
  std::printf("projected FLUX.1-dev 1024^2 forward (19 double + 38 single blocks): %.1f ms, %.1f TFLOP/s\n",
              forward_ms, (19 * f_double + 38 * f_single) / (forward_ms * 1e-3) * 1e-12);
}

// The 2048² forward's GEMMs (rows, N, K, epilogue) and how often each runs: cuBLASLt's first heuristic choice
// (what PARADIT_GEMM_AUTOTUNE=0 runs) against the fastest of its first kCandidates (what the backend's timed pick
// looks for), timed round-robin so that the card's clock, which sags as it heats, weighs on all alike, straight
// through cuBLASLt. Projects what the timed pick saves on a forward.
void bench_gemm_candidates(Backend& b) {
  struct Shape2048 {
    const char* what;
    int64_t rows, n, k;
    bool gelu;
    int per_forward;
  };
  const Shape2048 shapes[] = {{"single QKV", 16896, 9216, 3072, false, 38},
                              {"single MLP-in", 16896, 12288, 3072, true, 38},
                              {"single out", 16896, 3072, 15360, false, 38},
                              {"double QKV", 16384, 9216, 3072, false, 19},
                              {"double proj", 16384, 3072, 3072, false, 19},
                              {"double MLP-in", 16384, 12288, 3072, true, 19},
                              {"double MLP-out", 16384, 3072, 12288, false, 19}};
  constexpr int kCandidates = 8, kRounds = 4, kIters = 8;
  const auto stream = static_cast<cudaStream_t>(as_cuda_backend(b)->stream());
  cublasLtHandle_t lt;
  cublasLtCreate(&lt);
  const size_t ws_bytes = size_t(32) << 20;
  const Tensor ws = b.empty({int64_t(ws_bytes / 2)});
  double first_total = 0, best_total = 0;
  for (const Shape2048& sh : shapes) {
    const Tensor x = random(b, {sh.rows, sh.k}, 80), w = random(b, {sh.n, sh.k}, 81, 0.02f);
    const Tensor bias = random(b, {sh.n}, 82);
    const Tensor y = b.empty({sh.rows, sh.n});
    cublasLtMatmulDesc_t desc;
    cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F);
    const int32_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta));
    cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb));
    const uint32_t epi = sh.gelu ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_BIAS;
    cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi));
    const void* bias_ptr = bias.data();
    cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias_ptr, sizeof(bias_ptr));
    cublasLtMatrixLayout_t la, lb, lc;
    cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, sh.k, sh.n, sh.k);
    cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, sh.k, sh.rows, sh.k);
    cublasLtMatrixLayoutCreate(&lc, CUDA_R_16BF, sh.n, sh.rows, sh.n);
    cublasLtMatmulPreference_t pref;
    cublasLtMatmulPreferenceCreate(&pref);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_bytes, sizeof(ws_bytes));
    cublasLtMatmulHeuristicResult_t res[kCandidates];
    int found = 0;
    cublasLtMatmulAlgoGetHeuristic(lt, desc, la, lb, lc, lc, pref, kCandidates, res, &found);
    const float alpha = 1.0f, beta = 0.0f;
    std::vector<double> best(size_t(found), 1e30);
    for (int round = 0; round < kRounds; ++round)
      for (int c = 0; c < found; ++c) {
        const double us = time_us(b, [&] {
          cublasLtMatmul(lt, desc, &alpha, w.data(), la, x.data(), lb, &beta, y.data(), lc, y.data(), lc, &res[c].algo,
                         ws.data(), ws_bytes, stream);
        });
        best[size_t(c)] = std::min(best[size_t(c)], us);
      }
    const int winner = int(std::min_element(best.begin(), best.end()) - best.begin());
    std::printf("%-16s rows %5ld N %5ld K %5ld: heuristic #0 %8.1f us, best #%d %8.1f us (%+.1f%%) of %d\n", sh.what,
                long(sh.rows), long(sh.n), long(sh.k), best[0], winner, best[size_t(winner)],
                100.0 * (best[size_t(winner)] / best[0] - 1.0), found);
    first_total += sh.per_forward * best[0];
    best_total += sh.per_forward * best[size_t(winner)];
    cublasLtMatmulPreferenceDestroy(pref);
    cublasLtMatrixLayoutDestroy(la);
    cublasLtMatrixLayoutDestroy(lb);
    cublasLtMatrixLayoutDestroy(lc);
    cublasLtMatmulDescDestroy(desc);
  }
  std::printf("2048^2 forward's image-row GEMMs: heuristic %.1f ms, timed pick %.1f ms\n", first_total * 1e-3,
              best_total * 1e-3);
  cublasLtDestroy(lt);
}

// Host cost of one call: tiny shapes, so the GPU finishes each kernel before the host has issued the next and
// the time per call is the host's (validation, cache lookups, launch). It must stay well below the GPU time of
// the real op for the stream never to run dry.
void bench_host_overhead(Backend& b) {
  const Tensor x = random(b, {1, 8, 64}, 50), y = b.empty({1, 8, 64}), w = random(b, {64, 64}, 51);
  const Tensor bias = random(b, {64}, 52), mod = random(b, {1, 6 * 64}, 53), q = random(b, {1, 8, 1, 64}, 54);
  const Tensor o = b.empty({1, 8, 1, 64}), nw = random(b, {64}, 55);
  const auto per_call = [&](const char* what, const std::function<void()>& fn) {
    const int saved = g_iters;
    g_iters = 2000;
    std::printf("%-58s %9.2f us per call\n", what, time_us(b, fn));
    g_iters = saved;
  };
  per_call("host: add", [&] { b.add(y, x, x); });
  per_call("host: linear (+bias)", [&] { b.linear(y, x, w, bias, Epilogue::kNone); });
  per_call("host: gated_add_layer_norm_modulate", [&] {
    b.gated_add_layer_norm_modulate(y, x, x, mod.slice(1, 0, 64), mod.slice(1, 64, 64), mod.slice(1, 128, 64), 1e-6f);
  });
  per_call("host: layer_norm_modulate", [&] { b.layer_norm_modulate(y, x, mod.slice(1, 0, 64), mod.slice(1, 64, 64), 1e-6f); });
  per_call("host: rms_norm_rope (no rope)", [&] { b.rms_norm_rope(q, q, nw, Tensor(), Tensor(), 1e-6f); });
  per_call("host: attention", [&] { b.attention(o, Tensor(), q, q, q, 0.125f); });
}

int run() {
  std::string why;
  if (cuda_device_count(&why) == 0) {
    std::printf("no usable GPU: %s\n", why.c_str());
    return 0;
  }
  {
    auto b = create_cuda_backend(0);
    std::printf("%s, %d iterations per figure\n", b->name().c_str(), g_iters);
    bench_gemms(*b, "");
    bench_attention(*b);
    bench_split_attention(*b);
    bench_memory_bound(*b);
    bench_blocks(*b);
    bench_host_overhead(*b);
    bench_gemm_candidates(*b);
    CudaBackend* cuda = as_cuda_backend(*b);
    std::printf("peak device memory through the allocator: %.1f MiB\n", double(cuda->peak_bytes()) / (1 << 20));
  }
  return 0;
}

}  // namespace
}  // namespace paradit

int main(int argc, char** argv) {
  if (argc > 1) paradit::g_iters = std::max(1, std::atoi(argv[1]));
  const paradit::Status st = paradit::capture([] { paradit::run(); });
  if (!st.ok()) {
    std::fprintf(stderr, "cuda_ops_bench: %s\n", st.to_string().c_str());
    return 1;
  }
  return 0;
}
