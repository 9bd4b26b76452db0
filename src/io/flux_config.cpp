// FluxConfig: the published configurations, the tensor list a configuration implies, and config.json parsing.
#include <nlohmann/json.hpp>
#include <sstream>

#include "paradit/core/status.h"
#include "paradit/io/config_json.h"
#include "paradit/io/flux_checkpoint.h"

namespace paradit {

FluxConfig FluxConfig::dev() { return FluxConfig{}; }

FluxConfig FluxConfig::schnell() {
  FluxConfig c;
  c.guidance_embeds = false;
  return c;
}

std::string FluxConfig::summary() const {
  std::ostringstream os;
  os << num_layers << " double + " << num_single_layers << " single blocks, " << num_attention_heads << " heads x "
     << attention_head_dim << ", joint " << joint_attention_dim << ", pooled " << pooled_projection_dim << ", in "
     << in_channels << ", out " << out_channels << (guidance_embeds ? ", guidance" : ", no guidance");
  return os.str();
}

std::vector<std::pair<std::string, Shape>> FluxConfig::tensor_shapes() const {
  const int64_t d = hidden(), mlp = 4 * d, hd = attention_head_dim;
  // The sinusoidal timestep/guidance embedding is 256 wide in every FLUX.1 (BFL and diffusers alike).
  const int64_t freq = 256;
  std::vector<std::pair<std::string, Shape>> out;
  auto linear = [&](const std::string& name, int64_t rows, int64_t cols) {
    out.emplace_back(name + ".weight", Shape{rows, cols});
    out.emplace_back(name + ".bias", Shape{rows});
  };
  auto qk_norm = [&](const std::string& prefix) {
    out.emplace_back(prefix + "query_norm.scale", Shape{hd});
    out.emplace_back(prefix + "key_norm.scale", Shape{hd});
  };
  linear("img_in", d, in_channels);
  linear("txt_in", d, joint_attention_dim);
  linear("time_in.in_layer", d, freq);
  linear("time_in.out_layer", d, d);
  linear("vector_in.in_layer", d, pooled_projection_dim);
  linear("vector_in.out_layer", d, d);
  if (guidance_embeds) {
    linear("guidance_in.in_layer", d, freq);
    linear("guidance_in.out_layer", d, d);
  }
  for (int i = 0; i < num_layers; ++i) {
    const std::string b = "double_blocks." + std::to_string(i) + ".";
    for (const std::string s : {"img", "txt"}) {
      linear(b + s + "_mod.lin", 6 * d, d);  // shift, scale, gate for attention and for the MLP
      linear(b + s + "_attn.qkv", 3 * d, d);
      qk_norm(b + s + "_attn.norm.");
      linear(b + s + "_attn.proj", d, d);
      linear(b + s + "_mlp.0", mlp, d);
      linear(b + s + "_mlp.2", d, mlp);
    }
  }
  for (int i = 0; i < num_single_layers; ++i) {
    const std::string b = "single_blocks." + std::to_string(i) + ".";
    linear(b + "linear1", 3 * d + mlp, d);  // q; k; v; mlp in
    linear(b + "linear2", d, d + mlp);      // attention out and mlp out, concatenated
    qk_norm(b + "norm.");
    linear(b + "modulation.lin", 3 * d, d);
  }
  linear("final_layer.adaLN_modulation.1", 2 * d, d);
  linear("final_layer.linear", out_channels, d);  // patch size 1: the 2x2 packing happens outside
  return out;
}

namespace {

using nlohmann::json;

int positive_int(const json& cfg, const char* key, int fallback, const std::string& source) {
  if (!cfg.contains(key)) return fallback;
  const json& v = cfg[key];
  if (!v.is_number_integer() || v.get<int64_t>() <= 0 || v.get<int64_t>() > (1 << 30))
    PD_THROW(kCorruptData, "key ", key, " in ", source, " holds ", v.dump(), ", not a positive integer");
  return v.get<int>();
}

}  // namespace

FluxConfig FluxConfig::from_diffusers_json(const std::string& json_text, const std::string& source) {
  const json cfg = io::parse_config(json_text, source, "FluxTransformer2DModel");
  // Defaults are those of FluxTransformer2DModel.__init__, which is what diffusers uses for an absent key.
  FluxConfig c;
  if (positive_int(cfg, "patch_size", 1, source) != 1)
    PD_THROW(kUnimplemented, source, ": patch_size ", cfg["patch_size"].dump(),
             " (FLUX.1 uses 1; nothing else is supported)");
  c.in_channels = positive_int(cfg, "in_channels", 64, source);
  c.out_channels = cfg.contains("out_channels") && !cfg["out_channels"].is_null()
                       ? positive_int(cfg, "out_channels", 0, source)
                       : c.in_channels;
  c.num_layers = positive_int(cfg, "num_layers", 19, source);
  c.num_single_layers = positive_int(cfg, "num_single_layers", 38, source);
  c.attention_head_dim = positive_int(cfg, "attention_head_dim", 128, source);
  c.num_attention_heads = positive_int(cfg, "num_attention_heads", 24, source);
  c.joint_attention_dim = positive_int(cfg, "joint_attention_dim", 4096, source);
  c.pooled_projection_dim = positive_int(cfg, "pooled_projection_dim", 768, source);
  c.guidance_embeds = false;
  if (cfg.contains("guidance_embeds")) {
    if (!cfg["guidance_embeds"].is_boolean())
      PD_THROW(kCorruptData, "key guidance_embeds in ", source, " holds ", cfg["guidance_embeds"].dump(),
               ", not true/false");
    c.guidance_embeds = cfg["guidance_embeds"].get<bool>();
  }
  if (cfg.contains("axes_dims_rope")) {
    const json& ax = cfg["axes_dims_rope"];
    if (!ax.is_array() || ax.size() != 3)
      PD_THROW(kCorruptData, "key axes_dims_rope in ", source, " holds ", ax.dump(), ", not 3 integers");
    for (int i = 0; i < 3; ++i) {
      if (!ax[i].is_number_integer() || ax[i].get<int64_t>() <= 0 || ax[i].get<int64_t>() % 2 != 0)
        PD_THROW(kCorruptData, "key axes_dims_rope in ", source, " holds ", ax.dump(),
                 ", not 3 positive even integers");
      c.axes_dims_rope[i] = ax[i].get<int>();
    }
  }
  const int rope = c.axes_dims_rope[0] + c.axes_dims_rope[1] + c.axes_dims_rope[2];
  if (rope != c.attention_head_dim)
    PD_THROW(kInvalidArgument, source, ": axes_dims_rope sum to ", rope, " but attention_head_dim is ",
             c.attention_head_dim, " (RoPE must cover each head exactly)");
  return c;
}

}  // namespace paradit
