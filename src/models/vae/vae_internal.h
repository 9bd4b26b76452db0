// Pieces of the VAE decoder that tests check one by one against diffusers.
#pragma once

#include <functional>
#include <string>

#include "paradit/io/safetensors.h"
#include "paradit/models/vae.h"

namespace paradit::vae {

// Receives named intermediates of a decode (device NHWC tensors, valid during the call): "conv_in",
// "mid_block", "up_blocks.{i}" — the outputs of diffusers' decoder.conv_in, decoder.mid_block and
// decoder.up_blocks[i].
using VaeTap = std::function<void(const std::string& name, const Tensor& value)>;

// VaeDecoder::decode without tiling of a decoder made by VaeDecoder::load, reporting to tap.
Tensor decode_with_tap(VaeDecoder& decoder, const Tensor& latents, LatentLayout layout, const VaeTap& tap);

// The config of an LDM/BFL single file, from its shapes (names under `prefix`): widths, depth, latent and output
// channels, post_quant_conv and mid attention by presence; norm_num_groups 32; scaling and shift of FLUX for 16
// latent channels, of SD1.x for 4; anything else throws kInvalidArgument asking for a config.json.
VaeConfig infer_ldm_config(const SafetensorsSet& set, const std::string& prefix);

}  // namespace paradit::vae
