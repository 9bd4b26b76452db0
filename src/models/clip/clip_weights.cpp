// Loading a CLIP text encoder: find the files and the config, check every tensor, upload once.
#include <string>
#include <vector>

#include "models/clip/clip_internal.h"
#include "models/clip/encoder_files.h"
#include "paradit/core/status.h"

namespace paradit::clip {
namespace {

// Every CLIP text tower has it, under any prefix: after "text_model." in transformers 4 / ComfyUI files, at the
// top in transformers 5 saves. The prefix found in front of it is where all the model's names start.
constexpr const char* kMarker = "embeddings.token_embedding.weight";
// Inside the text tower but not a parameter: the position-id buffer older saves include (int64).
const std::vector<std::string> kIgnored = {"embeddings.position_ids"};

const text_encoder::EncoderKind& kind() {
  static const text_encoder::EncoderKind k{"CLIP text encoder", kMarker, {"text_encoder"}, &accepts_config};
  return k;
}

std::string layer_name(int i, const std::string& rest) { return "encoder.layers." + std::to_string(i) + "." + rest; }

// Every tensor name of the config with its shape, in load order.
std::vector<std::pair<std::string, Shape>> tensor_shapes(const ClipTextConfig& c) {
  const int64_t D = c.hidden_size, F = c.intermediate_size;
  std::vector<std::pair<std::string, Shape>> s = {
      {"embeddings.token_embedding.weight", {c.vocab_size, D}},
      {"embeddings.position_embedding.weight", {c.max_position_embeddings, D}},
  };
  for (int i = 0; i < c.num_hidden_layers; ++i) {
    for (const char* norm : {"layer_norm1", "layer_norm2"}) {
      s.push_back({layer_name(i, std::string(norm) + ".weight"), {D}});
      s.push_back({layer_name(i, std::string(norm) + ".bias"), {D}});
    }
    for (const char* proj : {"q_proj", "k_proj", "v_proj", "out_proj"}) {
      s.push_back({layer_name(i, std::string("self_attn.") + proj + ".weight"), {D, D}});
      s.push_back({layer_name(i, std::string("self_attn.") + proj + ".bias"), {D}});
    }
    s.push_back({layer_name(i, "mlp.fc1.weight"), {F, D}});
    s.push_back({layer_name(i, "mlp.fc1.bias"), {F}});
    s.push_back({layer_name(i, "mlp.fc2.weight"), {D, F}});
    s.push_back({layer_name(i, "mlp.fc2.bias"), {D}});
  }
  s.push_back({"final_layer_norm.weight", {D}});
  s.push_back({"final_layer_norm.bias", {D}});
  return s;
}

// The config.json that came with the files, else CLIP-L's when the file is CLIP-L sized: a bare file says nothing
// about heads, activation or pooling, and CLIP-L is the one FLUX uses.
ClipTextConfig choose_config(const text_encoder::EncoderFiles& f) {
  if (f.config_text) return ClipTextConfig::from_json(*f.config_text, f.config_source);
  const Shape tok = f.shape(kMarker);
  if (tok.size() != 2)
    PD_THROW(kCorruptData, "tensor '", f.prefix, kMarker, "' in ", f.set.file_of(f.prefix + kMarker), " has shape ",
             shape_str(tok), ", not [vocab, hidden]");
  const ClipTextConfig l = ClipTextConfig::clip_l();
  if (tok[1] != l.hidden_size)
    PD_THROW(kInvalidArgument, f.path, " has no config.json and hidden size ", tok[1],
             "; only CLIP-L (hidden 768) is recognised from the tensors alone: pass the model's config.json as "
             "config_json");
  return l;
}

}  // namespace

LoadedClip load_clip(Backend& backend, const std::string& path, const std::string& config_json) {
  const text_encoder::EncoderFiles f = text_encoder::open_encoder_files(path, config_json, kind());
  LoadedClip out{choose_config(f), {}};
  const ClipTextConfig& c = out.config;
  const std::string model = c.summary();

  // Check everything before uploading anything: a bad file fails fast and leaves no device memory behind.
  const auto shapes = tensor_shapes(c);
  std::vector<std::string> names;
  for (const auto& [name, shape] : shapes) {
    f.get(name, shape, model);
    names.push_back(name);
  }
  for (const char* ns : {"embeddings.", "encoder.", "final_layer_norm."})
    text_encoder::refuse_unknown(f, ns, names, kIgnored, model);

  ClipWeights& w = out.weights;
  const auto up = [&](const std::string& name) {
    Tensor t = backend.upload(f.set.get(f.prefix + name), backend.compute_dtype());
    w.bytes += t.nbytes();
    return t;
  };
  const auto linear = [&](int i, const std::string& p) {
    return Linear{up(layer_name(i, p + ".weight")), up(layer_name(i, p + ".bias"))};
  };
  const auto norm = [&](const std::string& p) { return Norm{up(p + ".weight"), up(p + ".bias")}; };
  const auto host = [&](const std::string& name) { return f.set.get(f.prefix + name); };

  w.token_embedding = up("embeddings.token_embedding.weight");
  w.position_embedding = up("embeddings.position_embedding.weight");
  for (int i = 0; i < c.num_hidden_layers; ++i) {
    LayerWeights l;
    l.ln1 = norm(layer_name(i, "layer_norm1"));
    const auto attn = [&](const char* proj, const char* what) {
      return host(layer_name(i, std::string("self_attn.") + proj + "_proj." + what));
    };
    l.qkv.w = text_encoder::upload_rows(backend, {attn("q", "weight"), attn("k", "weight"), attn("v", "weight")});
    l.qkv.b = text_encoder::upload_rows(backend, {attn("q", "bias"), attn("k", "bias"), attn("v", "bias")});
    w.bytes += l.qkv.w.nbytes() + l.qkv.b.nbytes();
    l.out = linear(i, "self_attn.out_proj");
    l.ln2 = norm(layer_name(i, "layer_norm2"));
    l.fc1 = linear(i, "mlp.fc1");
    l.fc2 = linear(i, "mlp.fc2");
    w.layers.push_back(std::move(l));
  }
  w.final_norm = norm("final_layer_norm");
  return out;
}

ClipWeights random_weights(Backend& backend, const ClipTextConfig& c, uint64_t seed) {
  ClipWeights w;
  const int64_t D = c.hidden_size, F = c.intermediate_size;
  const auto make = [&](const std::string& name, const Shape& shape) {
    Tensor t = text_encoder::random_weight(backend, seed, name, shape);
    w.bytes += t.nbytes();
    return t;
  };
  const auto linear = [&](const std::string& p, int64_t out, int64_t in) {
    return Linear{make(p + ".weight", {out, in}), make(p + ".bias", {out})};
  };
  const auto norm = [&](const std::string& p) { return Norm{make(p + ".weight", {D}), make(p + ".bias", {D})}; };

  w.token_embedding = make("embeddings.token_embedding.weight", {c.vocab_size, D});
  w.position_embedding = make("embeddings.position_embedding.weight", {c.max_position_embeddings, D});
  for (int i = 0; i < c.num_hidden_layers; ++i) {
    LayerWeights l;
    l.ln1 = norm(layer_name(i, "layer_norm1"));
    // Made fused, as load_clip leaves q, k and v: one [3D, D] projection (the name is only a seed).
    l.qkv = linear(layer_name(i, "self_attn.qkv_proj"), 3 * D, D);
    l.out = linear(layer_name(i, "self_attn.out_proj"), D, D);
    l.ln2 = norm(layer_name(i, "layer_norm2"));
    l.fc1 = linear(layer_name(i, "mlp.fc1"), F, D);
    l.fc2 = linear(layer_name(i, "mlp.fc2"), D, F);
    w.layers.push_back(std::move(l));
  }
  w.final_norm = norm("final_layer_norm");
  return w;
}

}  // namespace paradit::clip
