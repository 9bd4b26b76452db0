// A single LDM/BFL VAE file has no config: everything but the GroupNorm count and the latent scaling follows
// from its shapes (LDM's up.{k} holds block_out_channels[k], counted from the highest resolution).
#include "models/vae/vae_checkpoint.h"
#include "paradit/core/status.h"

namespace paradit::vae {

namespace {

const Shape& shape_of(const SafetensorsSet& set, const std::string& name, size_t rank) {
  if (!set.contains(name)) PD_THROW(kNotFound, "missing tensor '", name, "' in ", set.path());
  const Shape& s = set.info(name).shape;
  if (s.size() != rank)
    PD_THROW(kCorruptData, "tensor '", name, "' in ", set.file_of(name), " has shape ", shape_str(s), ", expected ",
             rank, " dimensions");
  return s;
}

}  // namespace

VaeConfig infer_ldm_config(const SafetensorsSet& set, const std::string& prefix) {
  const std::string d = prefix + "decoder.";
  VaeConfig c;
  c.latent_channels = int(shape_of(set, d + "conv_in.weight", 4)[1]);
  c.out_channels = int(shape_of(set, d + "conv_out.weight", 4)[0]);
  c.block_out_channels.clear();
  while (set.contains(d + "up." + std::to_string(c.block_out_channels.size()) + ".block.0.conv2.weight")) {
    const std::string name = d + "up." + std::to_string(c.block_out_channels.size()) + ".block.0.conv2.weight";
    c.block_out_channels.push_back(int(shape_of(set, name, 4)[0]));
  }
  if (c.block_out_channels.empty())
    PD_THROW(kCorruptData, set.path(), " has no tensor '", d, "up.0.block.0.conv2.weight': not an LDM VAE decoder");
  int resnets = 0;
  while (set.contains(d + "up.0.block." + std::to_string(resnets) + ".conv1.weight")) ++resnets;
  c.layers_per_block = resnets - 1;
  if (c.layers_per_block < 0) PD_THROW(kCorruptData, set.path(), " has no tensor '", d, "up.0.block.0.conv1.weight'");
  c.use_post_quant_conv = set.contains(prefix + "post_quant_conv.weight");
  c.mid_block_add_attention = set.contains(d + "mid.attn_1.q.weight");
  c.norm_num_groups = 32;  // not visible in any shape; every published VAE uses 32
  if (c.latent_channels == 16) {
    c.scaling_factor = 0.3611;  // FLUX.1 (SD3's VAE has the same shapes: pass its config.json)
    c.shift_factor = 0.1159;
    c.sample_size = 1024;
  } else if (c.latent_channels == 4) {
    c.scaling_factor = 0.18215;  // diffusers' LDM_VAE_DEFAULT_SCALING_FACTOR
    c.shift_factor = 0.0;
    c.sample_size = 512;
  } else {
    PD_THROW(kInvalidArgument, set.path(), ": a VAE with ", c.latent_channels,
             " latent channels has no known scaling factor; pass its diffusers config.json as config_json");
  }
  return c;
}

}  // namespace paradit::vae
