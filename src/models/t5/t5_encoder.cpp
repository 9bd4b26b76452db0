// T5EncoderModel.forward as transformers computes it, on any Backend.
//
// Buffers are allocated per forward; q, k and v are strided views of one [B, S, 3·inner] GEMM output. T5LayerNorm is
// rms_norm_rope without RoPE over a [B, S, 1, D] view (one "head" spanning the whole row).
#include "models/t5/t5_internal.h"
#include "paradit/core/status.h"

namespace paradit {
namespace t5 {
namespace {

class T5Model final : public T5Encoder {
 public:
  T5Model(Backend& backend, LoadedT5 loaded)
      : T5Encoder(loaded.config), backend_(backend), w_(std::move(loaded.weights)) {}

  size_t weight_bytes() const override { return w_.bytes; }

  Tensor forward(const std::vector<int32_t>& ids, int64_t batch) override {
    const int64_t S = check_ids(ids, batch);
    const int64_t B = batch, D = config_.d_model, H = config_.num_heads, d = config_.d_kv, I = config_.inner_dim();
    const int64_t F = config_.d_ff;

    Tensor h = backend_.empty({B, S, D}), xn = backend_.empty({B, S, D}), tmp = backend_.empty({B, S, D});
    Tensor qkv = backend_.empty({B, S, 3 * I}), attn = backend_.empty({B, S, I});
    Tensor gate = backend_.empty({B, S, F}), lin = backend_.empty({B, S, F});
    const Tensor& bias = bias_for(S);
    const auto heads = [&](int part) { return qkv.slice(2, part * I, I).unflatten(2, H, d); };

    backend_.embedding(h, w_.embedding, ids);  // no scaling by √d_model in T5
    for (const LayerWeights& l : w_.layers) {
      rms_norm(xn, h, l.attn_norm);
      backend_.linear(qkv, xn, l.qkv, Tensor(), Epilogue::kNone);
      // T5 folds the scale into its weights: scores are q·kᵀ + bias, unscaled.
      backend_.attention_biased(attn.unflatten(2, H, d), heads(0), heads(1), heads(2), 1.0f, bias, /*causal=*/false);
      backend_.linear(tmp, attn, l.o, Tensor(), Epilogue::kNone);
      backend_.add(h, h, tmp);

      rms_norm(xn, h, l.ff_norm);
      backend_.linear(gate, xn, l.wi_0, Tensor(), Epilogue::kGeluTanh);  // gelu_new is the tanh GELU
      backend_.linear(lin, xn, l.wi_1, Tensor(), Epilogue::kNone);
      backend_.mul(gate, gate, lin);
      backend_.linear(tmp, gate, l.wo, Tensor(), Epilogue::kNone);
      backend_.add(h, h, tmp);
    }
    Tensor out = backend_.empty({B, S, D});
    rms_norm(out, h, w_.final_norm);
    return out;
  }

 private:
  int64_t check_ids(const std::vector<int32_t>& ids, int64_t batch) const {
    PD_REQUIRE(batch > 0 && !ids.empty() && ids.size() % size_t(batch) == 0, "T5 forward: ", ids.size(),
               " token ids do not split into ", batch, " rows");
    const int64_t S = int64_t(ids.size()) / batch;
    for (size_t i = 0; i < ids.size(); ++i)
      PD_REQUIRE(ids[i] >= 0 && ids[i] < config_.vocab_size, "T5 forward: token id ", ids[i], " at row ",
                 int64_t(i) / S, " position ", int64_t(i) % S, " is outside the vocabulary [0, ", config_.vocab_size,
                 ")");
    return S;
  }

  // T5LayerNorm: x·rsqrt(mean(x²) + eps)·weight over d_model, statistics in f32.
  void rms_norm(const Tensor& y, const Tensor& x, const Tensor& weight) {
    const int64_t D = config_.d_model;
    backend_.rms_norm_rope(y.unflatten(2, 1, D), x.unflatten(2, 1, D), weight, Tensor(), Tensor(),
                           config_.layer_norm_epsilon);
  }

  // The bias depends only on S: made on the host and uploaded once per sequence length (FLUX always uses 512).
  const Tensor& bias_for(int64_t S) {
    if (bias_len_ != S) {
      bias_ = Tensor();  // free the old one first: at S = 512 it is 64 MiB
      bias_ = backend_.upload(position_bias(w_.bias_table, S, config_.relative_attention_num_buckets,
                                            config_.relative_attention_max_distance),
                              DType::kF32);
      bias_len_ = S;
    }
    return bias_;
  }

  Backend& backend_;
  T5Weights w_;
  Tensor bias_;
  int64_t bias_len_ = -1;
};

}  // namespace
}  // namespace t5

std::unique_ptr<T5Encoder> T5Encoder::load(Backend& backend, const std::string& path, const std::string& config_json) {
  return std::make_unique<t5::T5Model>(backend, t5::load_t5(backend, path, config_json));
}

std::unique_ptr<T5Encoder> T5Encoder::random(Backend& backend, const T5Config& config, uint64_t seed) {
  t5::validate_config(config, "random T5 encoder");
  return std::make_unique<t5::T5Model>(backend, t5::LoadedT5{config, t5::random_weights(backend, config, seed)});
}

}  // namespace paradit
