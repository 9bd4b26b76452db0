// CLIPTextModel.forward as transformers computes it, on any Backend.
//
// Buffers are allocated per forward (B×S×D is small next to the weights); q, k and v are strided views of one
// [B, S, 3D] GEMM output, heads split by unflatten, so nothing is copied between the ops.
#include <cmath>

#include "models/clip/clip_internal.h"
#include "paradit/core/status.h"

namespace paradit {
namespace clip {
namespace {

class ClipModel final : public ClipTextModel {
 public:
  ClipModel(Backend& backend, LoadedClip loaded)
      : ClipTextModel(std::move(loaded.config)), backend_(backend), w_(std::move(loaded.weights)) {}

  size_t weight_bytes() const override { return w_.bytes; }

  ClipTextOutput forward(const std::vector<int32_t>& ids, int64_t batch) override {
    const int64_t S = check_ids(ids, batch);
    const int64_t B = batch, D = config_.hidden_size, H = config_.num_attention_heads, d = config_.head_dim();
    const float eps = config_.layer_norm_eps;

    // CLIPTextEmbeddings: token_embedding(ids) + position_embedding(arange(S)).
    Tensor h = backend_.empty({B, S, D}), xn = backend_.empty({B, S, D}), tmp = backend_.empty({B, S, D});
    backend_.embedding(h, w_.token_embedding, ids);
    std::vector<int32_t> positions(size_t(B * S));
    for (int64_t i = 0; i < B * S; ++i) positions[size_t(i)] = int32_t(i % S);
    backend_.embedding(tmp, w_.position_embedding, positions);
    backend_.add(h, h, tmp);

    Tensor qkv = backend_.empty({B, S, 3 * D}), attn = backend_.empty({B, S, D});
    Tensor mlp = backend_.empty({B, S, int64_t(config_.intermediate_size)});
    const auto heads = [&](int part) { return qkv.slice(2, part * D, D).unflatten(2, H, d); };
    const float scale = float(1.0 / std::sqrt(double(d)));  // head_dim**-0.5
    for (const LayerWeights& l : w_.layers) {
      backend_.layer_norm(xn, h, l.ln1.w, l.ln1.b, eps);
      backend_.linear(qkv, xn, l.qkv.w, l.qkv.b, Epilogue::kNone);
      backend_.attention_biased(attn.unflatten(2, H, d), heads(0), heads(1), heads(2), scale, Tensor(),
                                /*causal=*/true);
      backend_.linear(tmp, attn, l.out.w, l.out.b, Epilogue::kNone);
      backend_.add(h, h, tmp);

      backend_.layer_norm(xn, h, l.ln2.w, l.ln2.b, eps);
      activation(mlp, xn, l.fc1);
      backend_.linear(tmp, mlp, l.fc2.w, l.fc2.b, Epilogue::kNone);
      backend_.add(h, h, tmp);
    }

    ClipTextOutput out;
    out.last_hidden_state = backend_.empty({B, S, D});
    backend_.layer_norm(out.last_hidden_state, h, w_.final_norm.w, w_.final_norm.b, eps);
    out.pooler_output = backend_.empty({B, D});
    const std::vector<int64_t> pos = clip_pool_positions(ids, B, config_.eos_token_id);
    for (int64_t b = 0; b < B; ++b)
      backend_.copy(out.pooler_output.select(0, b), out.last_hidden_state.select(0, b).select(0, pos[size_t(b)]));
    return out;
  }

 private:
  // Returns S; every id must index the vocabulary (the embedding op would refuse it without saying which row).
  int64_t check_ids(const std::vector<int32_t>& ids, int64_t batch) const {
    PD_REQUIRE(batch > 0 && !ids.empty() && ids.size() % size_t(batch) == 0, "CLIP forward: ", ids.size(),
               " token ids do not split into ", batch, " rows");
    const int64_t S = int64_t(ids.size()) / batch;
    PD_REQUIRE(S <= config_.max_position_embeddings, "CLIP forward: sequence length ", S,
               " exceeds max_position_embeddings ", config_.max_position_embeddings);
    for (size_t i = 0; i < ids.size(); ++i)
      PD_REQUIRE(ids[i] >= 0 && ids[i] < config_.vocab_size, "CLIP forward: token id ", ids[i], " at row ",
                 int64_t(i) / S, " position ", int64_t(i) % S, " is outside the vocabulary [0, ", config_.vocab_size,
                 ")");
    return S;
  }

  // y = act(fc1(x)): the tanh GELUs fuse into the GEMM; quick_gelu is its own op.
  void activation(const Tensor& y, const Tensor& x, const Linear& fc1) {
    if (config_.hidden_act == "quick_gelu") {
      backend_.linear(y, x, fc1.w, fc1.b, Epilogue::kNone);
      backend_.quick_gelu(y, y);
    } else {  // gelu_new, gelu_pytorch_tanh (validate_config allows nothing else)
      backend_.linear(y, x, fc1.w, fc1.b, Epilogue::kGeluTanh);
    }
  }

  Backend& backend_;
  ClipWeights w_;
};

}  // namespace
}  // namespace clip

std::unique_ptr<ClipTextModel> ClipTextModel::load(Backend& backend, const std::string& path,
                                                   const std::string& config_json) {
  return std::make_unique<clip::ClipModel>(backend, clip::load_clip(backend, path, config_json));
}

std::unique_ptr<ClipTextModel> ClipTextModel::random(Backend& backend, const ClipTextConfig& config, uint64_t seed) {
  clip::validate_config(config, "random CLIP text encoder");
  return std::make_unique<clip::ClipModel>(backend,
                                           clip::LoadedClip{config, clip::random_weights(backend, config, seed)});
}

std::vector<int64_t> clip_pool_positions(const std::vector<int32_t>& ids, int64_t batch, int eos_token_id) {
  PD_REQUIRE(batch > 0 && !ids.empty() && ids.size() % size_t(batch) == 0, "CLIP pooling: ", ids.size(),
             " token ids do not split into ", batch, " rows");
  const int64_t S = int64_t(ids.size()) / batch;
  std::vector<int64_t> pos(size_t(batch), 0);
  for (int64_t b = 0; b < batch; ++b) {
    const int32_t* row = ids.data() + b * S;
    if (eos_token_id == 2) {
      // input_ids.argmax(-1): the first position of the largest id.
      for (int64_t s = 1; s < S; ++s)
        if (row[s] > row[pos[size_t(b)]]) pos[size_t(b)] = s;
    } else {
      // (input_ids == eos).int().argmax(-1): the first EOS, 0 when there is none.
      for (int64_t s = 0; s < S; ++s)
        if (row[s] == eos_token_id) {
          pos[size_t(b)] = s;
          break;
        }
    }
  }
  return pos;
}

}  // namespace paradit
