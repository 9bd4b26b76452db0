// FluxTransformer2DModel.forward as diffusers computes it, on any Backend.
//
// Order of work: RoPE tables and timestep sinusoids on the host (uploaded once); input projections straight
// into the joint stream z (text rows, then image rows); temb = t_emb (+ g_emb) + p_emb; the double-stream
// blocks on z's row slices; the single-stream blocks on all of z; the final AdaLayerNormContinuous and
// projection on the image rows. No host synchronisation between the first upload and the returned tensor.
// Under sequence parallelism (FluxParallel) the same code runs on this rank's rows of the joint sequence: the
// buffers are that big, the RoPE tables are those rows', and the attention of every block spans all ranks.
// Under tensor parallelism (FluxTensorShard) the model holds a share of each block's heads and MLP columns
// (flux_tensor_parallel.cpp) and the blocks complete their row-parallel GEMMs with one all-reduce per half block.
// forward_part runs the held blocks (a PipeFusion stage's) over some rows, attending to K/V kept across forwards
// (PipeFusion, patch parallel); it too runs under tensor parallelism.
#include <array>
#include <cmath>
#include <string>
#include <vector>

#include "models/flux/flux_blocks.h"
#include "models/flux/flux_internal.h"
#include "models/flux/flux_weights.h"
#include "paradit/core/random.h"
#include "paradit/core/status.h"

namespace paradit {
namespace flux {
namespace {

constexpr int kTimestepDim = 256;    // Timesteps(num_channels=256)
constexpr double kRopeTheta = 10000;  // FluxPosEmbed(theta=10000)

void validate_config(const FluxConfig& c) {
  PD_REQUIRE(c.in_channels > 0 && c.out_channels > 0 && c.num_layers >= 0 && c.num_single_layers >= 0 &&
                 c.attention_head_dim > 0 && c.num_attention_heads > 0 && c.joint_attention_dim > 0 &&
                 c.pooled_projection_dim > 0,
             "FLUX config has a non-positive width or a negative layer count");
  int rope = 0;
  for (int a : c.axes_dims_rope) {
    PD_REQUIRE(a > 0 && a % 2 == 0, "FLUX axes_dims_rope must be even and positive, got ", a);
    rope += a;
  }
  PD_REQUIRE(rope == c.attention_head_dim, "FLUX axes_dims_rope sum to ", rope, " but attention_head_dim is ",
             c.attention_head_dim);
}

// `where` says which rows the shape counts ("" for the whole sequence).
void require_device_input(Backend& backend, const char* what, const Tensor& t, const Shape& shape,
                          const std::string& where = "") {
  PD_REQUIRE(t.defined(), "FLUX input ", what, " is undefined");
  PD_REQUIRE(t.device() == backend.device() && t.dtype() == backend.compute_dtype() && t.shape() == shape,
             "FLUX input ", what, " is ", t.desc(), ", expected ", dtype_name(backend.compute_dtype()),
             shape_str(shape), " on ", backend.device().str(), where);
}

class FluxModel final : public FluxTransformer {
 public:
  FluxModel(Backend& backend, const FluxConfig& config, const TensorParallelLayout& layout, FluxWeights weights,
            FluxBlockRange blocks)
      : FluxTransformer(config, layout.shard),
        backend_(backend),
        layout_(layout),
        w_(std::move(weights)),
        blocks_(blocks) {
    blocks_.end = blocks.end_or(total_blocks());
  }

  size_t weight_bytes() const override { return w_.bytes; }
  FluxBlockRange blocks() const override { return blocks_; }
  Tensor forward(const FluxInputs& in) override { return run(in, nullptr, nullptr); }
  Tensor forward(const FluxInputs& in, const FluxParallel& parallel) override {
    return run(in, &parallel, nullptr);
  }

  void plan_conditionings(const std::vector<FluxConditioning>& conditionings, const FluxParallel* parallel) override {
    clear_plan();
    if (conditionings.empty() || shard_.size > 1) return;
    const int64_t B = conditionings.front().pooled_projections.defined()
                          ? conditionings.front().pooled_projections.size(0) : 0;
    const int64_t P = config_.pooled_projection_dim, R = B * int64_t(conditionings.size());
    // All of them as one batch of R rows: pooled projections stacked, timesteps and guidance concatenated.
    FluxInputs all;
    all.pooled_projections = backend_.empty({R, P});
    for (size_t i = 0; i < conditionings.size(); ++i) {
      const FluxConditioning& c = conditionings[i];
      require_device_input(backend_, "pooled_projections", c.pooled_projections, {B, P});
      PD_REQUIRE(B > 0 && int64_t(c.timestep.size()) == B &&
                     int64_t(c.guidance.size()) == (config_.guidance_embeds ? B : int64_t(0)),
                 "FLUX plan_conditionings: conditioning ", i, " needs ", B, " timestep value(s)",
                 config_.guidance_embeds ? " and as many guidance values" : " and no guidance (no guidance embedding)");
      backend_.copy(all.pooled_projections.slice(0, int64_t(i) * B, B), c.pooled_projections);
      all.timestep.insert(all.timestep.end(), c.timestep.begin(), c.timestep.end());
      all.guidance.insert(all.guidance.end(), c.guidance.begin(), c.guidance.end());
    }
    const Tensor silu = backend_.empty({R, config_.hidden()});
    backend_.silu(silu, conditioning(all, R));
    plan_ = plan_modulations(backend_, silu, w_.double_blocks, w_.single_blocks, blocks_.begin, blocks_.end,
                             parallel ? parallel->sharing() : nullptr);
    plan_batch_ = B;
    plan_keys_ = conditionings;
    for (FluxConditioning& k : plan_keys_) k.pooled_projections = Tensor();  // the values are the caller's promise
  }

  void clear_plan() override {
    plan_ = {};
    plan_keys_.clear();
    plan_batch_ = 0;
  }

  Tensor forward_part(const FluxPartInputs& in) override {
    PD_REQUIRE(in.attention != nullptr, "FLUX forward_part needs the attention that holds the K/V");
    PD_REQUIRE(in.img_ids.defined() && in.txt_ids.defined() && in.pooled_projections.defined(),
               "FLUX forward_part needs img_ids, txt_ids and pooled_projections");
    require_tp_group(in.tp);
    const int64_t B = in.pooled_projections.size(0), T = in.txt_ids.size(0), N = in.img_ids.size(0);
    const int64_t rows = in.text_rows + in.image_rows;
    PD_REQUIRE(in.first_row >= 0 && in.first_row + rows <= T + N &&
                   (in.text_rows == 0 || in.first_row + in.text_rows <= T),
               "FLUX forward_part: rows [", in.first_row, ", ", in.first_row + rows, ") with ", in.text_rows,
               " text rows do not fit a sequence of ", T, " text and ", N, " image tokens");
    const bool first = blocks_.begin == 0, last = blocks_.end == total_blocks();
    Workspace ws(backend_, config_, layout_, B, in.text_rows, in.image_rows);
    ws.kv = in.attention;
    ws.sequence = T + N;
    if (shard_.size > 1) ws.tp = in.tp;
    rope_.update(backend_, in.txt_ids, in.img_ids, config_.axes_dims_rope, in.first_row, rows);
    ws.cos = rope_.cos;
    ws.sin = rope_.sin;
    if (first) {
      require_device_input(backend_, "hidden_states", in.hidden_states, {B, in.image_rows, config_.in_channels});
      require_device_input(backend_, "encoder_hidden_states", in.encoder_hidden_states,
                           {B, in.text_rows, config_.joint_attention_dim});
      if (in.image_rows > 0)
        backend_.linear(ws.img(ws.z), in.hidden_states, w_.img_in.w, w_.img_in.b, Epilogue::kNone);
      if (in.text_rows > 0)
        backend_.linear(ws.txt(ws.z), in.encoder_hidden_states, w_.txt_in.w, w_.txt_in.b, Epilogue::kNone);
    } else {
      // The stage before flushed its pending residual updates: the stream starts with none.
      require_device_input(backend_, "stream", in.stream, {B, rows, config_.hidden()});
      PD_REQUIRE(in.stream.is_contiguous(), "FLUX forward_part: the stream must be contiguous");
      ws.z = in.stream;
    }
    FluxInputs cond;
    cond.pooled_projections = in.pooled_projections;
    cond.timestep = in.timestep;
    cond.guidance = in.guidance;
    PD_REQUIRE(int64_t(in.timestep.size()) == B && (!config_.guidance_embeds || int64_t(in.guidance.size()) == B),
               "FLUX forward_part: timestep and guidance need one value per batch row (", B, ")");
    backend_.silu(ws.silu_temb, conditioning(cond, B));
    run_blocks(ws, nullptr);
    if (last) return final_layer(ws, B);
    ws.flush(backend_);  // the next stage reads z as it is
    return ws.z;
  }

  // parallel: null for a forward over the whole sequence on this rank.
  Tensor run(const FluxInputs& in, const FluxParallel* parallel, const FluxTap& tap) {
    const Dims dims = validate(in, parallel);
    const int64_t B = dims.B;
    const FluxShardRows& rows = dims.rows;
    const auto report = [&](const std::string& name, const Tensor& t) {
      if (tap) tap(name, t);
    };

    backend_.mark_region("embeddings, RoPE tables");
    Workspace ws(backend_, config_, layout_, B, rows.text_count, rows.image_count);
    if (parallel != nullptr && parallel->parts() > 1) ws.parallel = parallel;
    ws.sequence = dims.T + dims.N;
    if (shard_.size > 1) ws.tp = parallel->tp;
    // This rank's rows of the joint sequence start at its first text row, or at its first image row (T + …).
    const int64_t first_row = rows.text_count > 0 ? rows.text_start : dims.T + rows.image_start;
    rope_.update(backend_, in.txt_ids, in.img_ids, config_.axes_dims_rope, first_row, ws.T + ws.N);
    ws.cos = rope_.cos;
    ws.sin = rope_.sin;

    backend_.linear(ws.img(ws.z), in.hidden_states, w_.img_in.w, w_.img_in.b, Epilogue::kNone);
    report("x_embedder_out", ws.img(ws.z));
    backend_.linear(ws.txt(ws.z), in.encoder_hidden_states, w_.txt_in.w, w_.txt_in.b, Epilogue::kNone);
    report("context_embedder_out", ws.txt(ws.z));

    const Tensor temb = conditioning(in, B);
    report("temb", temb);
    backend_.silu(ws.silu_temb, temb);
    Communicator* share = ws.parallel ? ws.parallel->sharing() : nullptr;
    backend_.mark_region("modulation GEMVs");
    ModulationPlan own;  // this forward's, when it has none planned and shares the work over its SP group
    if (in.planned >= 0 && plan_.defined() && ws.tp == nullptr) {
      PD_REQUIRE(in.planned < int(plan_keys_.size()) && B == plan_batch_, "FLUX forward: planned conditioning ",
                 in.planned, " with a batch of ", B, ", but the plan holds ", plan_keys_.size(), " of ", plan_batch_);
      const FluxConditioning& key = plan_keys_[size_t(in.planned)];
      PD_REQUIRE(key.timestep == in.timestep && key.guidance == in.guidance, "FLUX forward: planned conditioning ",
                 in.planned, " was made for another timestep or guidance than this forward's");
      use_modulations(ws, plan_, int64_t(in.planned) * B, B);
    } else if (share != nullptr && ws.tp == nullptr && share->size() > 1) {
      own = plan_modulations(backend_, ws.silu_temb, w_.double_blocks, w_.single_blocks, blocks_.begin, blocks_.end,
                             share);
      use_modulations(ws, own, 0, B);
    }

    run_blocks(ws, tap);
    return final_layer(ws, B, tap);
  }

 private:
  int total_blocks() const { return config_.num_layers + config_.num_single_layers; }

  // The held blocks in order, each told its index (for stale-K/V attention). A tap sees z with the pending
  // residual update applied.
  void run_blocks(Workspace& ws, const FluxTap& tap) {
    for (int b = blocks_.begin; b < blocks_.end; ++b) {
      ws.layer = b;
      if (b < config_.num_layers) {
        double_block(backend_, w_.double_blocks[size_t(b)], ws);
        if (tap) {
          ws.flush(backend_);
          tap("double" + std::to_string(b) + "_encoder", ws.txt(ws.z));
          tap("double" + std::to_string(b) + "_hidden", ws.img(ws.z));
        }
      } else {
        const int i = b - config_.num_layers;
        single_block(backend_, w_.single_blocks[size_t(i)], ws);
        if (tap) {
          ws.flush(backend_);
          tap("single" + std::to_string(i) + "_out", ws.z);
        }
      }
    }
  }

  // AdaLayerNormContinuous on the image rows (applying the last block's pending update) and the output
  // projection; BFL's final modulation is [shift | scale]. The modulation is a collective of the tp group, run
  // even by a rank without image rows.
  Tensor final_layer(Workspace& ws, int64_t B, const FluxTap& tap = {}) {
    backend_.mark_region("final layer");
    const Tensor mod = ws.begin_block()[1].slice(1, 0, 2 * ws.D);
    modulation(backend_, ws, mod, w_.final_mod);
    Tensor out = backend_.empty({B, ws.N, config_.out_channels});
    if (ws.N == 0) return out;
    ws.norm_modulate(backend_, ws.T, ws.N, ws.chunk(mod, 0), ws.chunk(mod, 1));
    if (tap) tap("norm_out_out", ws.img(ws.zn));
    backend_.linear(out, ws.img(ws.zn), w_.final_out.w, w_.final_out.b, Epilogue::kNone);
    return out;
  }

  // A sharded model's forward needs its tp group (of its size, this rank at its coordinate); a whole one none.
  void require_tp_group(const Communicator* tp) const {
    if (shard_.size > 1) {
      PD_REQUIRE(tp != nullptr && tp->size() == shard_.size && tp->rank() == shard_.rank,
                 "this FLUX transformer holds tensor-parallel shard ", shard_.rank, " of ", shard_.size,
                 ": its forward needs the tp group of that size (FluxParallel::tp), where this rank is ", shard_.rank,
                 tp == nullptr ? std::string("; none was given") : "; got " + tp->describe());
    } else {
      PD_REQUIRE(tp == nullptr || tp->size() == 1, "a tp group of ", tp ? tp->size() : 0,
                 " ranks was given to a FLUX transformer that holds every weight (load it with FluxTensorShard)");
    }
  }

  struct Dims {
    int64_t B, N, T;     // batch; image and text tokens of the whole sequence
    FluxShardRows rows;  // those this rank holds
  };
  // Checks every input against the config, each other and this rank's share of the sequence.
  Dims validate(const FluxInputs& in, const FluxParallel* parallel) const {
    PD_REQUIRE(blocks_.begin == 0 && blocks_.end == total_blocks(), "this FLUX model holds blocks [",
               blocks_.begin, ", ", blocks_.end, ") of ", total_blocks(), ": a whole forward needs them all");
    PD_REQUIRE(in.hidden_states.defined() && in.hidden_states.dim() == 3 && in.img_ids.defined() &&
                   in.txt_ids.defined() && in.img_ids.dim() == 2 && in.txt_ids.dim() == 2,
               "FLUX forward needs hidden_states [B, N, C] and img_ids [N, 3], txt_ids [T, 3]");
    const int64_t B = in.hidden_states.size(0), N = in.img_ids.size(0), T = in.txt_ids.size(0);
    PD_REQUIRE(B > 0 && N > 0 && T > 0, "FLUX forward needs a batch, image tokens and text tokens; got B=", B,
               " N=", N, " T=", T);
    FluxShardRows rows{0, T, 0, N};
    std::string where;
    require_tp_group(parallel != nullptr ? parallel->tp : nullptr);
    if (parallel != nullptr) {
      PD_REQUIRE((parallel->ulysses != nullptr) == (parallel->ring != nullptr),
                 "FLUX sequence-parallel forward needs both the Ulysses and the Ring communicator, or neither");
      rows = flux_shard_rows(T, N, parallel->parts(), parallel->part());
      where = detail::concat(" (SP rank ", parallel->part(), " of ", parallel->parts(), " holds text rows [",
                             rows.text_start, ", ", rows.text_start + rows.text_count, ") and image rows [",
                             rows.image_start, ", ", rows.image_start + rows.image_count, "))");
    }
    require_device_input(backend_, "hidden_states", in.hidden_states, {B, rows.image_count, config_.in_channels},
                         where);
    require_device_input(backend_, "encoder_hidden_states", in.encoder_hidden_states,
                         {B, rows.text_count, config_.joint_attention_dim}, where);
    require_device_input(backend_, "pooled_projections", in.pooled_projections, {B, config_.pooled_projection_dim});
    PD_REQUIRE(int64_t(in.timestep.size()) == B, "FLUX input timestep has ", in.timestep.size(),
               " values for a batch of ", B);
    if (config_.guidance_embeds) {
      PD_REQUIRE(int64_t(in.guidance.size()) == B, "FLUX input guidance has ", in.guidance.size(),
                 " values for a batch of ", B, " (this model embeds a guidance scale)");
    } else {
      PD_REQUIRE(in.guidance.empty(), "FLUX input guidance given to a model without guidance embedding");
    }
    return {B, N, T, rows};
  }

  // mlp(x) = out(SiLU(in(x))), into y, through the [B, D] scratch `hidden`.
  void mlp(const Tensor& y, const Tensor& x, const Linear& lin_in, const Linear& lin_out, const Tensor& hidden) {
    backend_.linear(hidden, x, lin_in.w, lin_in.b, Epilogue::kNone);
    backend_.silu(hidden, hidden);
    backend_.linear(y, hidden, lin_out.w, lin_out.b, Epilogue::kNone);
  }

  // Sinusoid of 1000·s on the host in fp32, whatever the compute dtype. (diffusers in bf16 rounds σ, then
  // 1000·σ, to bf16 — σ = 0.73 embeds 732, not 730 — which turns the high-frequency lanes into noise; keeping
  // fp32 keeps a bf16 run close to the fp32 reference.)
  Tensor sinusoid(const std::vector<float>& s) {
    std::vector<float> scaled(s.size());
    for (size_t i = 0; i < s.size(); ++i) scaled[i] = s[i] * 1000.0f;
    return backend_.upload(timestep_embedding(scaled, kTimestepDim), backend_.compute_dtype());
  }

  // CombinedTimestep(Guidance)TextProjEmbeddings: temb = t_emb (+ g_emb) + p_emb, summed in that order.
  Tensor conditioning(const FluxInputs& in, int64_t B) {
    const int64_t D = config_.hidden();
    Tensor temb = backend_.empty({B, D}), term = backend_.empty({B, D}), hidden = backend_.empty({B, D});
    mlp(temb, sinusoid(in.timestep), w_.time_in, w_.time_out, hidden);
    if (config_.guidance_embeds) {
      mlp(term, sinusoid(in.guidance), w_.guidance_in, w_.guidance_out, hidden);
      backend_.add(temb, temb, term);
    }
    mlp(term, in.pooled_projections, w_.vector_in, w_.vector_out, hidden);
    backend_.add(temb, temb, term);
    return temb;
  }

  // The RoPE tables of the last position ids and rows seen. Every step of a denoising loop passes the same
  // ids, and building the tables on the host costs milliseconds at 1024² — time the GPU would sit idle.
  struct RopeCache {
    std::vector<float> txt_ids, img_ids;
    int64_t first_row = 0, rows = 0;
    Tensor cos, sin;

    // The ids as a key; empty (never cached) unless they are plain f32 host memory.
    static std::vector<float> key(const Tensor& ids) {
      if (!ids.defined() || !ids.device().is_cpu() || ids.dtype() != DType::kF32 || !ids.is_contiguous()) return {};
      const float* p = ids.data_as<float>();
      return std::vector<float>(p, p + ids.numel());
    }
    // Rows [first, first + count) of the joint sequence's tables on the device.
    void update(Backend& backend, const Tensor& txt, const Tensor& img, const std::array<int, 3>& axes,
                int64_t first, int64_t count) {
      std::vector<float> t = key(txt), i = key(img);
      const bool same_rows = first == first_row && count == rows;
      if (cos.defined() && !i.empty() && t == txt_ids && i == img_ids && same_rows) return;
      const RopeTables rope = rope_tables(txt, img, axes, kRopeTheta);
      cos = backend.upload(rope.cos.slice(0, first, count), DType::kF32);
      sin = backend.upload(rope.sin.slice(0, first, count), DType::kF32);
      txt_ids = std::move(t);
      img_ids = std::move(i);
      first_row = first;
      rows = count;
    }
  };

  Backend& backend_;
  TensorParallelLayout layout_;
  FluxWeights w_;
  FluxBlockRange blocks_;
  RopeCache rope_;
  // plan_conditionings: the modulations, each planned conditioning's timestep and guidance (the check of a forward
  // that names it) and their batch.
  ModulationPlan plan_;
  std::vector<FluxConditioning> plan_keys_;
  int64_t plan_batch_ = 0;
};

std::unique_ptr<FluxTransformer> create(Backend& backend, const FluxConfig& config, FluxTensorShard shard,
                                        FluxBlockRange blocks, const WeightSource& make) {
  validate_config(config);
  const TensorParallelLayout layout(config, shard);
  return std::make_unique<FluxModel>(backend, config, layout, build_weights(config, layout, make, blocks), blocks);
}

// FNV-1a of a weight's name mixed into the seed: every tensor gets its own stream, whatever the order of
// creation (consecutive seeds would give shifted copies of one sequence under fill_random's counter scheme).
uint64_t tensor_seed(uint64_t seed, const std::string& name) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : name) h = (h ^ c) * 0x100000001b3ull;
  return splitmix64(seed ^ h);
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

Tensor forward_with_tap(FluxTransformer& model, const FluxInputs& in, const FluxTap& tap) {
  auto* impl = dynamic_cast<FluxModel*>(&model);
  PD_CHECK(impl != nullptr, "forward_with_tap needs a model made by FluxTransformer::load or ::random");
  return impl->run(in, nullptr, tap);
}

}  // namespace flux

std::unique_ptr<FluxTransformer> FluxTransformer::load(Backend& backend, const FluxCheckpoint& checkpoint,
                                                       FluxTensorShard shard, FluxBlockRange blocks) {
  return flux::create(backend, checkpoint.config(), shard, blocks,
                      [&](const std::string& name, const Shape&, const flux::WeightSlice& slice) -> Tensor {
                        if (slice.kind == flux::WeightSlice::Kind::kNone) return {};
                        return backend.upload(slice.host(checkpoint.get(name)), backend.compute_dtype());
                      });
}

std::unique_ptr<FluxTransformer> FluxTransformer::random(Backend& backend, const FluxConfig& config, uint64_t seed,
                                                         FluxTensorShard shard, FluxBlockRange blocks) {
  // Weights ~ 1/√fan_in (activations keep their scale through the blocks), biases small, norm scales 1 ± 0.02.
  return flux::create(backend, config, shard, blocks,
                      [&](const std::string& name, const Shape& shape, const flux::WeightSlice& slice) -> Tensor {
    if (slice.kind == flux::WeightSlice::Kind::kNone) return {};
    Tensor t = backend.empty(shape);
    const uint64_t s = flux::tensor_seed(seed, name);
    if (flux::ends_with(name, ".scale")) {
      Tensor ones = backend.empty(shape);
      backend.fill(ones, 1.0f);
      backend.fill_random(t, s, 0.02f);
      backend.add(t, t, ones);
    } else if (flux::ends_with(name, ".bias")) {
      backend.fill_random(t, s, 0.01f);
    } else {
      backend.fill_random(t, s, float(1.0 / std::sqrt(double(shape.at(1)))));
    }
    return slice.device(backend, t);
  });
}

}  // namespace paradit
