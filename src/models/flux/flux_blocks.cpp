#include "models/flux/flux_blocks.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <initializer_list>
#include <optional>
#include <utility>

#include "paradit/core/status.h"
#include "paradit/parallel/sequence_shard.h"
#include "paradit/parallel/usp_attention.h"

namespace paradit::flux {

namespace {

// Region names for Backend::mark_region (bench pipeline --profile), shared by both kinds of block.
constexpr const char* kModulationRegion = "modulation GEMVs";
constexpr const char* kNormRegion = "LayerNorm + modulate (+ residual)";
constexpr const char* kQkNormRegion = "q/k RMSNorm + RoPE";
constexpr const char* kAttentionRegion = "attention (+ SP transfers)";
constexpr const char* kMlpInRegion = "MLP-in GEMMs (+ GELU)";
constexpr const char* kOutRegion = "out GEMMs (+ TP all-reduce)";

}  // namespace

Workspace::Workspace(Backend& backend, const FluxConfig& config, const TensorParallelLayout& layout, int64_t batch,
                     int64_t text_tokens, int64_t image_tokens)
    : T(text_tokens),
      N(image_tokens),
      D(config.hidden()),
      H(layout.heads),
      d(config.attention_head_dim),
      A(layout.attention()),
      M(layout.mlp) {
  const int64_t S = T + N;
  z = backend.empty({batch, S, D});
  zn = backend.empty({batch, S, D});
  if (A > 0) qkv = backend.empty({batch, S, 3 * A});
  cat = backend.empty({batch, S, A + M});
  delta = backend.empty({batch, S, D});
  for (auto& set : mod_sets)
    for (Tensor& mod : set) mod = backend.empty({batch, 6 * D});
  if (layout.shard.size > 1) mod_local = backend.empty({batch, SequenceShard(6 * D, layout.shard.size).max_count()});
  silu_temb = backend.empty({batch, D});
}

void modulation(Backend& backend, Workspace& ws, const Tensor& mod, const Linear& w) {
  if (ws.tp == nullptr) {
    backend.linear(mod, ws.silu_temb, w.w, w.b, Epilogue::kNone);
    return;
  }
  const SequenceShard shard(mod.size(1), ws.tp->size());
  const Tensor local = ws.mod_local.slice(1, 0, shard.count(ws.tp->rank()));
  backend.linear(local, ws.silu_temb, w.w, w.b, Epilogue::kNone);
  ws.tp->all_gather(mod, local, 1, shard.counts());
}

ModulationPlan plan_modulations(Backend& backend, const Tensor& silu_temb, const std::vector<DoubleBlockWeights>& doubles,
                                const std::vector<SingleBlockWeights>& singles, int first, int end, Communicator* group) {
  const int64_t D = silu_temb.size(1), R = silu_temb.size(0);
  const bool shared = group != nullptr && group->size() > 1 && (6 * D) % group->size() == 0 &&
                      (3 * D) % group->size() == 0;
  const int U = shared ? group->size() : 1, u = shared ? group->rank() : 0;
  ModulationPlan plan;
  plan.first = first;
  plan.rows = R;
  plan.n_double = std::max(0, std::min(end, int(doubles.size())) - first);
  const int first_single = std::max(first, int(doubles.size()));
  plan.n_single = std::max(0, end - first_single);
  // One local buffer of every piece this rank computes ([pieces, R, width / U]), and one all-gather into a buffer
  // laid out [piece, R, U, width / U], that is [piece, R, width].
  const auto run = [&](int64_t pieces, int64_t width, const std::function<const Linear&(int64_t)>& weight) {
    const int64_t w = width / U;
    const Tensor whole = backend.empty({pieces, R, width});
    const Tensor local = shared ? backend.empty({pieces, R, w}) : whole;
    for (int64_t i = 0; i < pieces; ++i) {
      const Linear& l = weight(i);
      backend.linear(local.select(0, i), silu_temb, l.w.slice(0, u * w, w),
                     l.b.defined() ? l.b.slice(0, u * w, w) : Tensor(), Epilogue::kNone);
    }
    if (shared) {
      std::vector<Tensor> from(static_cast<size_t>(U));
      for (int p = 0; p < U; ++p) from[size_t(p)] = whole.unflatten(2, U, w).select(2, p);
      group->all_gather_v(from, local);
    }
    return whole;
  };
  if (plan.n_double > 0)
    plan.doubles = run(2 * plan.n_double, 6 * D, [&](int64_t i) -> const Linear& {
      const DoubleBlockWeights& b = doubles[size_t(first + i / 2)];
      return i % 2 == 0 ? b.txt.mod : b.img.mod;
    });
  if (plan.n_single > 0) {
    const int skip = first_single - int(doubles.size());
    plan.singles = run(plan.n_single, 3 * D, [&](int64_t i) -> const Linear& { return singles[size_t(skip + i)].mod; });
  }
  return plan;
}

void use_modulations(Workspace& ws, const ModulationPlan& plan, int64_t row0, int64_t B) {
  PD_CHECK(plan.defined() && row0 >= 0 && row0 + B <= plan.rows, "modulation rows [", row0, ", ", row0 + B,
           ") of a plan of ", plan.rows);
  ws.pre_mods.assign(size_t(plan.n_double + plan.n_single), {});
  ws.pre_first = plan.first;
  const auto rows = [&](const Tensor& t, int64_t piece) { return t.select(0, piece).slice(0, row0, B); };
  for (int j = 0; j < plan.n_double; ++j)
    ws.pre_mods[size_t(j)] = {rows(plan.doubles, 2 * j), rows(plan.doubles, 2 * j + 1)};
  for (int j = 0; j < plan.n_single; ++j) ws.pre_mods[size_t(plan.n_double + j)] = {Tensor(), rows(plan.singles, j)};
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
  const Tensor q = ws.head_chunk(qkv, 0), k = ws.head_chunk(qkv, 1);
  const Tensor cos = ws.cos.slice(0, start, length), sin = ws.sin.slice(0, start, length);
  backend.qk_norm_rope(q, k, q_norm, k_norm, cos, sin, kNormEps);
}

// Joint attention over every row of the sequence, on this rank's heads, into columns [0, A) of cat: the local
// rows of qkv alone on one rank, all ranks' rows through usp_attention under sequence parallelism, kept K/V
// through ws.kv. The ranks of an SP group (or a patch-parallel group, or a PipeFusion stage's) share a tp
// coordinate, so they all hold the same heads (none, and all skip, or the same ones). In steps: under sequence
// parallelism the constructor posts q, k and v on their way (PostedUspAttention), the caller's GPU work before
// attend() runs beside those transfers, and its work between attend() and finish() beside the output's way back;
// otherwise finish() does it all. `posted`: whether the caller has work to run between the constructor and
// attend() (a single block's MLP GEMM); without any, finish() makes the whole exchange, which lets Ring alone
// attend its own block beside it. `row_parts` > 1: under Ulysses the caller writes q, k and v part by part
// (part_rows) and posts each part as it is done (post_part), so that it travels while the next is computed.
class JointAttention {
 public:
  JointAttention(Backend& backend, const Workspace& ws, bool posted, int row_parts = 1) : be_(backend), ws_(ws) {
    if (ws.H == 0 || ws.kv != nullptr || ws.parallel == nullptr) return;
    const bool ulysses = ws.parallel->ulysses->size() > 1;
    if (!posted && !(ulysses && row_parts > 1)) return;
    // q, k and v side by side ([B, rows, 3, H, d]): Ulysses moves them in one all-to-all.
    usp_.emplace(backend, *ws.parallel->ulysses, *ws.parallel->ring, shard(), out(), Tensor(), packed_qkv(),
                 scale(), ws.parallel->head_chunks, ws.parallel->ring_kv, ulysses ? row_parts : 1);
    parts_ = ulysses ? row_parts : 1;
  }

  // The parts in which the caller writes this rank's rows of q, k and v: {first row, count} of part i.
  int row_parts() const { return parts_; }
  std::pair<int64_t, int64_t> part_rows(int i) const {
    return usp_ ? usp_->part_rows(i) : std::pair<int64_t, int64_t>{0, ws_.T + ws_.N};
  }
  void post_part(int i) {
    if (usp_ && parts_ > 1) usp_->post_part(i);
  }

  // Whether the output travels back from other ranks (so that work between attend() and finish() can hide it).
  bool output_travels() const { return usp_.has_value() && ws_.parallel->ulysses->size() > 1; }

  void attend() {
    if (usp_) usp_->attend();
  }

  void finish() {
    if (usp_) {
      usp_->finish();
    } else if (ws_.H > 0 && ws_.kv == nullptr && ws_.parallel != nullptr) {
      usp_attention(be_, *ws_.parallel->ulysses, *ws_.parallel->ring, shard(), out(), Tensor(), packed_qkv(), scale(),
                    ws_.parallel->head_chunks, ws_.parallel->ring_kv);
    } else if (ws_.H > 0) {
      const Tensor q = ws_.head_chunk(ws_.qkv, 0), k = ws_.head_chunk(ws_.qkv, 1), v = ws_.head_chunk(ws_.qkv, 2);
      if (ws_.kv != nullptr) ws_.kv->attend(be_, ws_.layer, out(), q, k, v, scale());
      else be_.attention(out(), Tensor(), q, k, v, scale());
    }
  }

 private:
  Tensor out() const { return ws_.attention_out().unflatten(2, ws_.H, ws_.d); }
  Tensor packed_qkv() const { return ws_.qkv.unflatten(2, 3, ws_.A).unflatten(3, ws_.H, ws_.d); }
  SequenceShard shard() const { return SequenceShard(ws_.sequence, ws_.parallel->parts()); }
  float scale() const { return float(1.0 / std::sqrt(double(ws_.d))); }

  Backend& be_;
  const Workspace& ws_;
  std::optional<PostedUspAttention> usp_;
  int parts_ = 1;
};

// A double block's rows of q, k and v are computed (and, under Ulysses, sent) in this many parts: the second
// part's QKV GEMMs run while the first part travels.
constexpr int kDoubleBlockRowParts = 2;

// z += gate ⊙ (x·wᵀ + b) on rows [start, start + length), left pending.
struct GatedResidual {
  int64_t start, length;
  Tensor x;  // [B, length, K]
  const Linear& w;
  Tensor gate;  // [B, D]
};

// The row-parallel half of a block, for one or two streams: each GEMM writes its rows of delta and the gated
// update is left to the next LayerNorm. Under tensor parallelism each rank's product is a partial sum (its input
// columns; the bias on tp rank 0 alone) and one all-reduce over every row completes them — one all-reduce
// however many streams.
void gated_residuals(Backend& backend, Workspace& ws, std::initializer_list<GatedResidual> parts) {
  for (const GatedResidual& p : parts) {
    if (p.length == 0) continue;
    const Tensor out = Workspace::rows(ws.delta, p.start, p.length);
    if (p.x.size(-1) > 0) {
      backend.linear(out, p.x, p.w.w, p.w.b, Epilogue::kNone);
    } else {
      // No input column here (more tp ranks than heads); tp rank 0, which holds the bias, always has some.
      PD_CHECK(!p.w.b.defined(), "a tensor-parallel rank without input columns holds a bias");
      backend.fill(out, 0.0f);
    }
  }
  if (ws.tp != nullptr) ws.tp->all_reduce(ws.delta);
  for (const GatedResidual& p : parts) ws.defer_residual(p.start, p.length, p.gate);
}

// One stream of a double block: its weights, its modulation buffer and its rows of the joint sequence.
struct Stream {
  const StreamWeights& w;
  const Tensor& mod;
  int64_t start, length;
};

}  // namespace

void double_block(Backend& backend, const DoubleBlockWeights& w, Workspace& ws) {
  const std::array<Tensor, 2>* pre = ws.precomputed(ws.layer);
  const std::array<Tensor, 2> mods = pre ? *pre : ws.begin_block();
  const Stream txt{w.txt, mods[0], 0, ws.T}, img{w.img, mods[1], ws.T, ws.N};
  const auto rows = [](const Tensor& t, const Stream& s) { return Workspace::rows(t, s.start, s.length); };

  // Attention half: each stream's adaLN and QKV GEMM write its rows of the joint qkv buffer. A stream with no
  // rows here (a sequence-parallel rank holding only text or only image tokens) has nothing to compute, but
  // its modulation is a collective of the tp group, whose ranks hold the same rows.
  for (const Stream& s : {txt, img}) {
    if (s.length == 0) continue;
    if (!pre) {
      backend.mark_region(kModulationRegion);
      modulation(backend, ws, s.mod, s.w.mod);
    }
    backend.mark_region(kNormRegion);
    ws.norm_modulate(backend, s.start, s.length, ws.chunk(s.mod, 0), ws.chunk(s.mod, 1));
  }
  // The QKV GEMMs part by part of this rank's rows, each part's rows of each stream with that stream's weights.
  JointAttention attention(backend, ws, /*posted=*/false, kDoubleBlockRowParts);
  for (int i = 0; i < attention.row_parts() && ws.H > 0; ++i) {
    const auto [first, count] = attention.part_rows(i);
    for (const Stream& s : {txt, img}) {
      const int64_t begin = std::max(first, s.start), end = std::min(first + count, s.start + s.length);
      if (end <= begin) continue;
      const Stream part{s.w, s.mod, begin, end - begin};
      backend.mark_region("QKV GEMMs");
      backend.linear(rows(ws.qkv, part), rows(ws.zn, part), s.w.qkv.w, s.w.qkv.b, Epilogue::kNone);
      backend.mark_region(kQkNormRegion);
      qk_norm_rope(backend, ws, part.start, part.length, s.w.q_norm, s.w.k_norm);
    }
    attention.post_part(i);
  }
  backend.mark_region(kAttentionRegion);
  attention.finish();
  const Tensor attn = ws.attention_out(), hidden = ws.mlp_hidden();
  backend.mark_region(kOutRegion);
  gated_residuals(backend, ws, {{txt.start, txt.length, rows(attn, txt), txt.w.proj, ws.chunk(txt.mod, 2)},
                                {img.start, img.length, rows(attn, img), img.w.proj, ws.chunk(img.mod, 2)}});

  // MLP half, each stream on its own rows; its LayerNorm applies the attention half's update.
  for (const Stream& s : {txt, img}) {
    if (s.length == 0) continue;
    backend.mark_region(kNormRegion);
    ws.norm_modulate(backend, s.start, s.length, ws.chunk(s.mod, 3), ws.chunk(s.mod, 4));
    backend.mark_region(kMlpInRegion);
    backend.linear(rows(hidden, s), rows(ws.zn, s), s.w.mlp_in.w, s.w.mlp_in.b, Epilogue::kGeluTanh);
  }
  backend.mark_region(kOutRegion);
  gated_residuals(backend, ws,
                  {{txt.start, txt.length, rows(hidden, txt), txt.w.mlp_out, ws.chunk(txt.mod, 5)},
                   {img.start, img.length, rows(hidden, img), img.w.mlp_out, ws.chunk(img.mod, 5)}});
}

void single_block(Backend& backend, const SingleBlockWeights& w, Workspace& ws) {
  const std::array<Tensor, 2>* pre = ws.precomputed(ws.layer);
  const Tensor mod = pre ? (*pre)[1] : ws.begin_block()[1].slice(1, 0, 3 * ws.D);
  if (!pre) {
    backend.mark_region(kModulationRegion);
    modulation(backend, ws, mod, w.mod);
  }
  backend.mark_region(kNormRegion);
  ws.norm_modulate(backend, 0, ws.T + ws.N, ws.chunk(mod, 0), ws.chunk(mod, 1));
  // linear1 as two GEMMs over the same input: q|k|v first, so that under sequence parallelism q, k and v travel
  // while the MLP's GEMM (straight into cat's columns [A, A+M)) runs.
  if (ws.H > 0) {
    backend.mark_region("QKV GEMMs");
    backend.linear(ws.qkv, ws.zn, w.qkv.w, w.qkv.b, Epilogue::kNone);
    backend.mark_region(kQkNormRegion);
    qk_norm_rope(backend, ws, 0, ws.T + ws.N, w.q_norm, w.k_norm);
  }
  JointAttention attention(backend, ws, /*posted=*/true);
  backend.mark_region(kMlpInRegion);
  backend.linear(ws.mlp_hidden(), ws.zn, w.mlp_in.w, w.mlp_in.b, Epilogue::kGeluTanh);
  backend.mark_region(kAttentionRegion);
  if (!attention.output_travels() || ws.tp != nullptr) {
    attention.finish();
    backend.mark_region(kOutRegion);
    gated_residuals(backend, ws, {{0, ws.T + ws.N, ws.cat, w.out, ws.chunk(mod, 2)}});
    return;
  }
  // Under Ulysses each rank's attention output comes back from the others: linear2 is split over its input
  // columns, the MLP's (4/5 of the work, with the bias) running while the output travels and the attention's
  // added once it has arrived.
  attention.attend();
  backend.mark_region(kOutRegion);
  const Tensor w_attn = w.out.w.slice(1, 0, ws.A), w_mlp = w.out.w.slice(1, ws.A, ws.M);
  backend.linear(ws.delta, ws.mlp_hidden(), w_mlp, w.out.b, Epilogue::kNone);
  backend.mark_region(kAttentionRegion);
  attention.finish();
  backend.mark_region(kOutRegion);
  backend.linear_accumulate(ws.delta, ws.attention_out(), w_attn);
  ws.defer_residual(0, ws.T + ws.N, ws.chunk(mod, 2));
}

}  // namespace paradit::flux
