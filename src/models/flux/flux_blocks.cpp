#include "models/flux/flux_blocks.h"

#include <cmath>

#include "paradit/parallel/usp_attention.h"

namespace paradit::flux {

Workspace::Workspace(Backend& backend, const FluxConfig& config, int64_t batch, int64_t text_tokens,
                     int64_t image_tokens)
    : T(text_tokens),
      N(image_tokens),
      D(config.hidden()),
      H(config.num_attention_heads),
      d(config.attention_head_dim) {
  const int64_t S = T + N;
  z = backend.empty({batch, S, D});
  zn = backend.empty({batch, S, D});
  qkv = backend.empty({batch, S, 3 * D});
  cat = backend.empty({batch, S, 5 * D});
  mod_img = backend.empty({batch, 6 * D});
  mod_txt = backend.empty({batch, 6 * D});
  silu_temb = backend.empty({batch, D});
}

namespace {

// RMSNorm + RoPE in place on the q and k of sequence rows [start, start + length), with those rows' tables.
void qk_norm_rope(Backend& backend, const Workspace& ws, int64_t start, int64_t length, const Tensor& q_norm,
                  const Tensor& k_norm) {
  const Tensor qkv = Workspace::rows(ws.qkv, start, length);
  const Tensor q = ws.chunk(qkv, 0).unflatten(2, ws.H, ws.d);
  const Tensor k = ws.chunk(qkv, 1).unflatten(2, ws.H, ws.d);
  const Tensor cos = ws.cos.slice(0, start, length), sin = ws.sin.slice(0, start, length);
  backend.rms_norm_rope(q, q, q_norm, cos, sin, kNormEps);
  backend.rms_norm_rope(k, k, k_norm, cos, sin, kNormEps);
}

// Joint attention over every row of the sequence, into columns [0, D) of cat: the local rows of qkv alone on
// one rank, all ranks' rows through usp_attention under sequence parallelism, kept K/V through ws.kv.
void joint_attention(Backend& backend, const Workspace& ws) {
  const auto heads = [&](const Tensor& t) { return t.unflatten(2, ws.H, ws.d); };
  const Tensor out = heads(ws.chunk(ws.cat, 0));
  const Tensor q = heads(ws.chunk(ws.qkv, 0)), k = heads(ws.chunk(ws.qkv, 1)), v = heads(ws.chunk(ws.qkv, 2));
  const float scale = float(1.0 / std::sqrt(double(ws.d)));
  if (ws.kv != nullptr) {
    ws.kv->attend(backend, ws.layer, out, q, k, v, scale);
  } else if (ws.parallel == nullptr) {
    backend.attention(out, Tensor(), q, k, v, scale);
  } else {
    usp_attention(backend, *ws.parallel->ulysses, *ws.parallel->ring,
                  SequenceShard(ws.sequence, ws.parallel->parts()), out, Tensor(), q, k, v, scale);
  }
}

// One stream of a double block: its weights, its modulation buffer and its rows of the joint sequence.
struct Stream {
  const StreamWeights& w;
  const Tensor& mod;
  int64_t start, length;
};

}  // namespace

void double_block(Backend& backend, const DoubleBlockWeights& w, Workspace& ws) {
  const Stream streams[2] = {{w.txt, ws.mod_txt, 0, ws.T}, {w.img, ws.mod_img, ws.T, ws.N}};
  const auto rows = [](const Tensor& t, const Stream& s) { return Workspace::rows(t, s.start, s.length); };

  // Attention half: each stream's adaLN and QKV GEMM write its rows of the joint qkv buffer. A stream with no
  // rows here (a sequence-parallel rank holding only text or only image tokens) has nothing to compute.
  for (const Stream& s : streams) {
    if (s.length == 0) continue;
    backend.linear(s.mod, ws.silu_temb, s.w.mod.w, s.w.mod.b, Epilogue::kNone);
    backend.layer_norm_modulate(rows(ws.zn, s), rows(ws.z, s), ws.chunk(s.mod, 0), ws.chunk(s.mod, 1), kNormEps);
    backend.linear(rows(ws.qkv, s), rows(ws.zn, s), s.w.qkv.w, s.w.qkv.b, Epilogue::kNone);
    qk_norm_rope(backend, ws, s.start, s.length, s.w.q_norm, s.w.k_norm);
  }
  joint_attention(backend, ws);

  // Output projections and MLPs, each stream on its own rows; cat's columns [D, 5D) hold the MLP hidden.
  const Tensor attn = ws.chunk(ws.cat, 0);
  const Tensor hidden = ws.cat.slice(2, ws.D, 4 * ws.D);
  for (const Stream& s : streams) {
    if (s.length == 0) continue;
    backend.linear_gated_residual(rows(ws.z, s), rows(attn, s), s.w.proj.w, s.w.proj.b, ws.chunk(s.mod, 2));
    backend.layer_norm_modulate(rows(ws.zn, s), rows(ws.z, s), ws.chunk(s.mod, 3), ws.chunk(s.mod, 4), kNormEps);
    backend.linear(rows(hidden, s), rows(ws.zn, s), s.w.mlp_in.w, s.w.mlp_in.b, Epilogue::kGeluTanh);
    backend.linear_gated_residual(rows(ws.z, s), rows(hidden, s), s.w.mlp_out.w, s.w.mlp_out.b, ws.chunk(s.mod, 5));
  }
}

void single_block(Backend& backend, const SingleBlockWeights& w, Workspace& ws) {
  const Tensor mod = ws.mod_img.slice(1, 0, 3 * ws.D);
  backend.linear(mod, ws.silu_temb, w.mod.w, w.mod.b, Epilogue::kNone);
  backend.layer_norm_modulate(ws.zn, ws.z, ws.chunk(mod, 0), ws.chunk(mod, 1), kNormEps);
  // linear1 as two GEMMs over the same input: q|k|v, and the MLP straight into cat's columns [D, 5D).
  backend.linear(ws.qkv, ws.zn, w.qkv.w, w.qkv.b, Epilogue::kNone);
  backend.linear(ws.cat.slice(2, ws.D, 4 * ws.D), ws.zn, w.mlp_in.w, w.mlp_in.b, Epilogue::kGeluTanh);
  qk_norm_rope(backend, ws, 0, ws.T + ws.N, w.q_norm, w.k_norm);
  joint_attention(backend, ws);
  backend.linear_gated_residual(ws.z, ws.cat, w.out.w, w.out.b, ws.chunk(mod, 2));
}

}  // namespace paradit::flux
