// Loading a T5 encoder: find the files and the config (or infer it from the shapes), check every tensor, upload once.
#include <string>
#include <vector>

#include "models/clip/encoder_files.h"
#include "models/t5/t5_internal.h"
#include "paradit/core/allocator.h"
#include "paradit/core/status.h"

namespace paradit::t5 {
namespace {

// Every T5 encoder has it, under any prefix ("", "text_encoders.t5xxl.transformer.", ...); the prefix in front of
// it is where all the model's names start ("encoder.*", "shared.weight").
constexpr const char* kMarker = "encoder.final_layer_norm.weight";
// The input embedding: transformers ties encoder.embed_tokens to shared and saves shared.weight; ComfyUI files have
// either or both.
constexpr const char* kShared = "shared.weight";
constexpr const char* kEmbedTokens = "encoder.embed_tokens.weight";
constexpr const char* kBiasTable = "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight";

const text_encoder::EncoderKind& kind() {
  static const text_encoder::EncoderKind k{
      "T5 encoder", kMarker, {"text_encoder_2", "text_encoder_3"}, &accepts_config};
  return k;
}

std::string block(int i, const std::string& rest) { return "encoder.block." + std::to_string(i) + "." + rest; }

// Every tensor name of the config with its shape, except the embedding (one of two names).
std::vector<std::pair<std::string, Shape>> tensor_shapes(const T5Config& c) {
  const int64_t D = c.d_model, I = c.inner_dim(), F = c.d_ff;
  std::vector<std::pair<std::string, Shape>> s;
  for (int i = 0; i < c.num_layers; ++i) {
    s.push_back({block(i, "layer.0.layer_norm.weight"), {D}});
    for (const char* p : {"q", "k", "v"})
      s.push_back({block(i, std::string("layer.0.SelfAttention.") + p + ".weight"), {I, D}});
    s.push_back({block(i, "layer.0.SelfAttention.o.weight"), {D, I}});
    if (i == 0) s.push_back({kBiasTable, {c.relative_attention_num_buckets, c.num_heads}});
    s.push_back({block(i, "layer.1.layer_norm.weight"), {D}});
    s.push_back({block(i, "layer.1.DenseReluDense.wi_0.weight"), {F, D}});
    s.push_back({block(i, "layer.1.DenseReluDense.wi_1.weight"), {F, D}});
    s.push_back({block(i, "layer.1.DenseReluDense.wo.weight"), {D, F}});
  }
  s.push_back({"encoder.final_layer_norm.weight", {D}});
  return s;
}

// A dimension of a stored tensor, which must have the given rank.
int dim(const text_encoder::EncoderFiles& f, const std::string& name, size_t rank, size_t d) {
  const Shape s = f.shape(name);
  if (s.size() != rank || s[d] <= 0 || s[d] > (int64_t(1) << 30))
    PD_THROW(kCorruptData, "tensor '", f.prefix, name, "' in ", f.set.file_of(f.prefix + name), " has shape ",
             shape_str(s), "; a T5 encoder has a ", rank, "-d tensor there");
  return int(s[d]);
}

// The config a file without config.json implies: every width is in a shape; max_distance (128) and eps (1e-6) are
// not, and are T5 v1.1's.
T5Config infer_config(const text_encoder::EncoderFiles& f, const std::string& embedding) {
  if (!f.has(block(0, "layer.1.DenseReluDense.wi_0.weight")) && f.has(block(0, "layer.1.DenseReluDense.wi.weight")))
    PD_THROW(kUnimplemented, f.path,
             " is a T5 v1.0 encoder (ReLU feed-forward, DenseReluDense.wi); only T5 v1.1's "
             "gated-GELU (wi_0, wi_1) is supported");
  T5Config c;
  c.vocab_size = dim(f, embedding, 2, 0);
  c.d_model = dim(f, embedding, 2, 1);
  c.num_layers = f.count_blocks("encoder.block.");
  c.relative_attention_num_buckets = dim(f, kBiasTable, 2, 0);
  c.num_heads = dim(f, kBiasTable, 2, 1);
  const int inner = dim(f, block(0, "layer.0.SelfAttention.q.weight"), 2, 0);
  if (inner % c.num_heads != 0)
    PD_THROW(kCorruptData, f.path, ": q projection width ", inner, " is not a multiple of the ", c.num_heads,
             " heads of the relative attention bias");
  c.d_kv = inner / c.num_heads;
  c.d_ff = dim(f, block(0, "layer.1.DenseReluDense.wi_0.weight"), 2, 0);
  validate_config(c, f.path);
  return c;
}

}  // namespace

LoadedT5 load_t5(Backend& backend, const std::string& path, const std::string& config_json) {
  const text_encoder::EncoderFiles f = text_encoder::open_encoder_files(path, config_json, kind());
  const std::string embedding = f.has(kShared) ? kShared : kEmbedTokens;
  if (!f.has(embedding))
    PD_THROW(kNotFound, "missing tensor '", f.prefix, kShared, "' (or '", f.prefix, kEmbedTokens, "') in ", f.path);
  LoadedT5 out{f.config_text ? T5Config::from_json(*f.config_text, f.config_source) : infer_config(f, embedding), {}};
  const T5Config& c = out.config;
  const std::string model = c.summary();

  // Check everything before uploading anything: a bad file fails fast and leaves no device memory behind.
  auto shapes = tensor_shapes(c);
  shapes.push_back({embedding, {c.vocab_size, c.d_model}});
  if (f.has(kShared) && f.has(kEmbedTokens)) shapes.push_back({kEmbedTokens, {c.vocab_size, c.d_model}});
  std::vector<std::string> names;
  for (const auto& [name, shape] : shapes) {
    f.get(name, shape, model);
    names.push_back(name);
  }
  text_encoder::refuse_unknown(f, "encoder.", names, {}, model);
  // ComfyUI's scaled-fp8 T5 files mark themselves with this key; their weights need per-tensor scales we don't apply.
  if (f.set.contains(f.prefix + "scaled_fp8"))
    PD_THROW(kUnimplemented, f.path, " is a scaled-fp8 T5 (tensor '", f.prefix, "scaled_fp8'); it is not supported");

  T5Weights& w = out.weights;
  const auto host = [&](const std::string& name) { return f.set.get(f.prefix + name); };
  const auto up = [&](const std::string& name) {
    Tensor t = backend.upload(host(name), backend.compute_dtype());
    w.bytes += t.nbytes();
    return t;
  };
  w.embedding = up(embedding);
  for (int i = 0; i < c.num_layers; ++i) {
    LayerWeights l;
    l.attn_norm = up(block(i, "layer.0.layer_norm.weight"));
    const auto proj = [&](const char* p) {
      return host(block(i, std::string("layer.0.SelfAttention.") + p + ".weight"));
    };
    l.qkv = text_encoder::upload_rows(backend, {proj("q"), proj("k"), proj("v")});
    w.bytes += l.qkv.nbytes();
    l.o = up(block(i, "layer.0.SelfAttention.o.weight"));
    l.ff_norm = up(block(i, "layer.1.layer_norm.weight"));
    l.wi_0 = up(block(i, "layer.1.DenseReluDense.wi_0.weight"));
    l.wi_1 = up(block(i, "layer.1.DenseReluDense.wi_1.weight"));
    l.wo = up(block(i, "layer.1.DenseReluDense.wo.weight"));
    w.layers.push_back(std::move(l));
  }
  w.final_norm = up("encoder.final_layer_norm.weight");
  const Tensor table = host(kBiasTable);
  w.bias_table = Tensor::empty(table.shape(), DType::kF32, cpu_allocator());
  convert_host(w.bias_table.data(), DType::kF32, table.data(), table.dtype(), size_t(table.numel()));
  return out;
}

T5Weights random_weights(Backend& backend, const T5Config& c, uint64_t seed) {
  T5Weights w;
  const int64_t D = c.d_model, I = c.inner_dim(), F = c.d_ff;
  const auto make = [&](const std::string& name, const Shape& shape) {
    Tensor t = text_encoder::random_weight(backend, seed, name, shape);
    w.bytes += t.nbytes();
    return t;
  };
  w.embedding = make(kShared, {c.vocab_size, D});
  for (int i = 0; i < c.num_layers; ++i) {
    LayerWeights l;
    l.attn_norm = make(block(i, "layer.0.layer_norm.weight"), {D});
    // Made fused, as load_t5 leaves q, k and v: one [3·inner, D] projection (the name is only a seed).
    l.qkv = make(block(i, "layer.0.SelfAttention.qkv.weight"), {3 * I, D});
    l.o = make(block(i, "layer.0.SelfAttention.o.weight"), {D, I});
    l.ff_norm = make(block(i, "layer.1.layer_norm.weight"), {D});
    l.wi_0 = make(block(i, "layer.1.DenseReluDense.wi_0.weight"), {F, D});
    l.wi_1 = make(block(i, "layer.1.DenseReluDense.wi_1.weight"), {F, D});
    l.wo = make(block(i, "layer.1.DenseReluDense.wo.weight"), {D, F});
    w.layers.push_back(std::move(l));
  }
  w.final_norm = make("encoder.final_layer_norm.weight", {D});
  // The table lives on the host (the bias is built there); ~1/√H is small next to the attention logits.
  w.bias_table = backend.download_f32(
      text_encoder::random_weight(backend, seed, kBiasTable, {c.relative_attention_num_buckets, c.num_heads}));
  return w;
}

}  // namespace paradit::t5
