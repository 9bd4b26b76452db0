// VaeConfig: the published configurations and diffusers' AutoencoderKL config.json.
#include <nlohmann/json.hpp>
#include <sstream>

#include "paradit/core/status.h"
#include "paradit/io/config_json.h"
#include "paradit/models/vae.h"

namespace paradit {

VaeConfig VaeConfig::flux() { return VaeConfig{}; }

VaeConfig VaeConfig::sd3() {
  VaeConfig c;
  c.scaling_factor = 1.5305;
  c.shift_factor = 0.0609;
  return c;
}

int VaeConfig::scale_factor() const { return 1 << (int(block_out_channels.size()) - 1); }

std::string VaeConfig::summary() const {
  std::ostringstream os;
  os << "latent " << latent_channels << ", blocks [";
  for (size_t i = 0; i < block_out_channels.size(); ++i) os << (i ? ", " : "") << block_out_channels[i];
  os << "] x " << layers_per_block << ", groups " << norm_num_groups << ", scaling " << scaling_factor << ", shift "
     << shift_factor << (use_post_quant_conv ? ", post_quant_conv" : "")
     << (mid_block_add_attention ? "" : ", no mid attention");
  return os.str();
}

namespace {

using nlohmann::json;

int bounded_int(const json& v, const char* key, int64_t lowest, const std::string& source) {
  if (!v.is_number_integer() || v.get<int64_t>() < lowest || v.get<int64_t>() > (1 << 20))
    PD_THROW(kCorruptData, "key ", key, " in ", source, " holds ", v.dump(),
             lowest > 0 ? ", not a positive integer" : ", not a non-negative integer");
  return v.get<int>();
}

int positive_int(const json& v, const char* key, const std::string& source) { return bounded_int(v, key, 1, source); }

int positive_int(const json& cfg, const char* key, int fallback, const std::string& source) {
  return cfg.contains(key) ? positive_int(cfg[key], key, source) : fallback;
}

bool boolean(const json& cfg, const char* key, bool fallback, const std::string& source) {
  if (!cfg.contains(key)) return fallback;
  if (!cfg[key].is_boolean())
    PD_THROW(kCorruptData, "key ", key, " in ", source, " holds ", cfg[key].dump(), ", not true/false");
  return cfg[key].get<bool>();
}

// A number, or null (diffusers' None) meaning `if_null`.
double number(const json& cfg, const char* key, double fallback, double if_null, const std::string& source) {
  if (!cfg.contains(key)) return fallback;
  if (cfg[key].is_null()) return if_null;
  if (!cfg[key].is_number())
    PD_THROW(kCorruptData, "key ", key, " in ", source, " holds ", cfg[key].dump(), ", not a number");
  return cfg[key].get<double>();
}

}  // namespace

VaeConfig VaeConfig::from_diffusers_json(const std::string& json_text, const std::string& source) {
  const json cfg = io::parse_config(json_text, source, "AutoencoderKL");
  // Defaults are AutoencoderKL.__init__'s, which is what diffusers uses for an absent key.
  VaeConfig c;
  c.out_channels = positive_int(cfg, "out_channels", 3, source);
  c.latent_channels = positive_int(cfg, "latent_channels", 4, source);
  c.block_out_channels = {64};
  if (cfg.contains("block_out_channels")) {
    const json& b = cfg["block_out_channels"];
    if (!b.is_array() || b.empty())
      PD_THROW(kCorruptData, "key block_out_channels in ", source, " holds ", b.dump(), ", not a list of widths");
    c.block_out_channels.clear();
    for (const json& v : b) c.block_out_channels.push_back(positive_int(v, "block_out_channels", source));
  }
  // 0 is legal: one resnet per up block (the decoder has layers_per_block + 1).
  c.layers_per_block =
      cfg.contains("layers_per_block") ? bounded_int(cfg["layers_per_block"], "layers_per_block", 0, source) : 1;
  c.norm_num_groups = positive_int(cfg, "norm_num_groups", 32, source);
  c.scaling_factor = number(cfg, "scaling_factor", 0.18215, 0.18215, source);
  c.shift_factor = number(cfg, "shift_factor", 0.0, 0.0, source);
  if (c.scaling_factor == 0) PD_THROW(kCorruptData, "key scaling_factor in ", source, " is 0");
  c.use_post_quant_conv = boolean(cfg, "use_post_quant_conv", true, source);
  c.mid_block_add_attention = boolean(cfg, "mid_block_add_attention", true, source);
  c.sample_size = 32;
  if (cfg.contains("sample_size")) {
    // An int, or [height, width] of which diffusers' tiling reads the first.
    const json& s = cfg["sample_size"];
    c.sample_size = positive_int(s.is_array() && !s.empty() ? s[0] : s, "sample_size", source);
  }

  // What the decoder's structure depends on beyond the widths: one UpDecoderBlock2D per width, SiLU.
  if (cfg.contains("up_block_types")) {
    const json& u = cfg["up_block_types"];
    if (!u.is_array() || u.size() != c.block_out_channels.size())
      PD_THROW(kUnimplemented, source, ": up_block_types ", u.dump(), " does not list one block per width of ",
               "block_out_channels");
    for (const json& t : u) {
      if (!t.is_string() || t.get<std::string>() != "UpDecoderBlock2D")
        PD_THROW(kUnimplemented, source, ": up block type ", t.dump(), " (only UpDecoderBlock2D is supported)");
    }
  } else if (c.block_out_channels.size() != 1) {
    PD_THROW(kCorruptData, source, " lists ", c.block_out_channels.size(),
             " block_out_channels but no up_block_types (the default is one block)");
  }
  if (cfg.contains("act_fn") && cfg["act_fn"] != "silu")
    PD_THROW(kUnimplemented, source, ": act_fn ", cfg["act_fn"].dump(), " (only silu is supported)");
  for (int w : c.block_out_channels) {
    if (w % c.norm_num_groups != 0)
      PD_THROW(kInvalidArgument, source, ": block width ", w, " is not a multiple of norm_num_groups ",
               c.norm_num_groups);
  }
  return c;
}

}  // namespace paradit
