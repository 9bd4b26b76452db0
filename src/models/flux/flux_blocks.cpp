#include "models/flux/flux_blocks.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "paradit/core/status.h"
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
  delta = backend.empty({batch, S, D});
  for (auto& set : mod_sets)
    for (Tensor& mod : set) mod = backend.empty({batch, 6 * D});
  silu_temb = backend.empty({batch, D});
}

namespace {

// The part {first row, row count} of rows [start, start + length) in stream s (0: text rows [0, T), 1: image rows
// [T, T + N)).
std::pair<int64_t, int64_t> stream_part(const Workspace& ws, int s, int64_t start, int64_t length) {
  const int64_t lo = s == 0 ? 0 : ws.T, hi = s == 0 ? ws.T : ws.T + ws.N;
  const int64_t first = std::max(start, lo), end = std::min(start + length, hi);
  return {first, std::max<int64_t>(0, end - first)};
}

// Whether both streams have an update pending with the same gate (as a single block leaves them): then the whole
// sequence is one piece.
bool one_gate(const Workspace& ws) {
  const Tensor* g = ws.pending_gate;
  return g[0].defined() && g[1].defined() && g[0].data() == g[1].data();
}

}  // namespace

void Workspace::norm_modulate(Backend& backend, int64_t start, int64_t length, const Tensor& shift,
                              const Tensor& scale) {
  const bool whole = start == 0 && length == T + N;
  if (whole && (one_gate(*this) || (!pending_gate[0].defined() && !pending_gate[1].defined()))) {
    if (pending_gate[0].defined())
      backend.gated_add_layer_norm_modulate(zn, z, delta, pending_gate[0], shift, scale, kNormEps);
    else
      backend.layer_norm_modulate(zn, z, shift, scale, kNormEps);
    pending_gate[0] = pending_gate[1] = Tensor();
    return;
  }
  for (int s = 0; s < 2; ++s) {
    const auto [first, count] = stream_part(*this, s, start, length);
    if (count == 0) continue;
    const Tensor out = rows(zn, first, count), x = rows(z, first, count);
    if (pending_gate[s].defined()) {
      PD_CHECK(count == (s == 0 ? T : N), "a pending residual update is applied to a whole stream at once");
      backend.gated_add_layer_norm_modulate(out, x, rows(delta, first, count), pending_gate[s], shift, scale,
                                            kNormEps);
      pending_gate[s] = Tensor();
    } else {
      backend.layer_norm_modulate(out, x, shift, scale, kNormEps);
    }
  }
}

void Workspace::defer_residual(int64_t start, int64_t length, const Tensor& gate) {
  for (int s = 0; s < 2; ++s) {
    if (stream_part(*this, s, start, length).second == 0) continue;
    PD_CHECK(!pending_gate[s].defined(), "a residual update is left pending on a stream that has one");
    pending_gate[s] = gate;
  }
}

void Workspace::flush(Backend& backend) {
  if (one_gate(*this)) {
    backend.gated_add(z, delta, pending_gate[0]);
  } else {
    for (int s = 0; s < 2; ++s) {
      if (!pending_gate[s].defined()) continue;
      const auto [first, count] = stream_part(*this, s, 0, T + N);
      backend.gated_add(rows(z, first, count), rows(delta, first, count), pending_gate[s]);
    }
  }
  pending_gate[0] = pending_gate[1] = Tensor();
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
// one rank, all ranks' rows through usp_attention under sequence parallelism.
void joint_attention(Backend& backend, const Workspace& ws) {
  const auto heads = [&](const Tensor& t) { return t.unflatten(2, ws.H, ws.d); };
  const Tensor out = heads(ws.chunk(ws.cat, 0));
  const Tensor q = heads(ws.chunk(ws.qkv, 0)), k = heads(ws.chunk(ws.qkv, 1)), v = heads(ws.chunk(ws.qkv, 2));
  const float scale = float(1.0 / std::sqrt(double(ws.d)));
  if (ws.parallel == nullptr) {
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
  const std::array<Tensor, 2> mods = ws.begin_block();
  const Stream streams[2] = {{w.txt, mods[0], 0, ws.T}, {w.img, mods[1], ws.T, ws.N}};
  const auto rows = [](const Tensor& t, const Stream& s) { return Workspace::rows(t, s.start, s.length); };

  // Attention half: each stream's adaLN and QKV GEMM write its rows of the joint qkv buffer. A stream with no
  // rows here (a sequence-parallel rank holding only text or only image tokens) has nothing to compute.
  for (const Stream& s : streams) {
    if (s.length == 0) continue;
    backend.linear(s.mod, ws.silu_temb, s.w.mod.w, s.w.mod.b, Epilogue::kNone);
    ws.norm_modulate(backend, s.start, s.length, ws.chunk(s.mod, 0), ws.chunk(s.mod, 1));
    backend.linear(rows(ws.qkv, s), rows(ws.zn, s), s.w.qkv.w, s.w.qkv.b, Epilogue::kNone);
    qk_norm_rope(backend, ws, s.start, s.length, s.w.q_norm, s.w.k_norm);
  }
  joint_attention(backend, ws);

  // Output projections and MLPs, each stream on its own rows; cat's columns [D, 5D) hold the MLP hidden. Each
  // half's residual update is left to the LayerNorm that follows it (this block's second, the next block's first).
  const Tensor attn = ws.chunk(ws.cat, 0);
  const Tensor hidden = ws.cat.slice(2, ws.D, 4 * ws.D);
  for (const Stream& s : streams) {
    if (s.length == 0) continue;
    backend.linear(rows(ws.delta, s), rows(attn, s), s.w.proj.w, s.w.proj.b, Epilogue::kNone);
    ws.defer_residual(s.start, s.length, ws.chunk(s.mod, 2));
    ws.norm_modulate(backend, s.start, s.length, ws.chunk(s.mod, 3), ws.chunk(s.mod, 4));
    backend.linear(rows(hidden, s), rows(ws.zn, s), s.w.mlp_in.w, s.w.mlp_in.b, Epilogue::kGeluTanh);
    backend.linear(rows(ws.delta, s), rows(hidden, s), s.w.mlp_out.w, s.w.mlp_out.b, Epilogue::kNone);
    ws.defer_residual(s.start, s.length, ws.chunk(s.mod, 5));
  }
}

void single_block(Backend& backend, const SingleBlockWeights& w, Workspace& ws) {
  const Tensor mod = ws.begin_block()[1].slice(1, 0, 3 * ws.D);
  backend.linear(mod, ws.silu_temb, w.mod.w, w.mod.b, Epilogue::kNone);
  ws.norm_modulate(backend, 0, ws.T + ws.N, ws.chunk(mod, 0), ws.chunk(mod, 1));
  // linear1 as two GEMMs over the same input: q|k|v, and the MLP straight into cat's columns [D, 5D).
  backend.linear(ws.qkv, ws.zn, w.qkv.w, w.qkv.b, Epilogue::kNone);
  backend.linear(ws.cat.slice(2, ws.D, 4 * ws.D), ws.zn, w.mlp_in.w, w.mlp_in.b, Epilogue::kGeluTanh);
  qk_norm_rope(backend, ws, 0, ws.T + ws.N, w.q_norm, w.k_norm);
  joint_attention(backend, ws);
  backend.linear(ws.delta, ws.cat, w.out.w, w.out.b, Epilogue::kNone);
  ws.defer_residual(0, ws.T + ws.N, ws.chunk(mod, 2));
}

}  // namespace paradit::flux
