// The decoder's weights on the device, in the layouts the ops read (see vae.h).
#pragma once

#include <vector>

#include "models/vae/vae_checkpoint.h"
#include "paradit/backend/backend.h"

namespace paradit::vae {

struct Conv {
  Tensor w, b;  // [Cout, kh, kw, Cin], [Cout]
};
struct Linear {
  Tensor w, b;  // [Cout, Cin], [Cout]; w undefined when absent
  bool defined() const { return w.defined(); }
};
struct Norm {
  Tensor w, b;  // GroupNorm affine [C]
};

// ResnetBlock2D without time embedding: GroupNorm+SiLU → conv → GroupNorm+SiLU → conv, plus the input
// (through a 1×1 conv when the width changes).
struct Resnet {
  Norm norm1;
  Conv conv1;
  Norm norm2;
  Conv conv2;
  Linear shortcut;
};

// The mid block's single-head self-attention over H·W tokens; q, k, v fused into rows [q; k; v].
struct Attention {
  Norm norm;
  Linear qkv;  // [3C, C]
  Linear out;  // [C, C]
};

struct UpBlock {
  std::vector<Resnet> resnets;  // layers_per_block + 1
  Conv upsample;                // undefined (w) on the last block
};

struct VaeWeights {
  Linear post_quant;  // undefined unless use_post_quant_conv
  Conv conv_in;
  Resnet mid_resnet0;
  Attention mid_attention;  // qkv.w undefined without mid_block_add_attention
  Resnet mid_resnet1;
  std::vector<UpBlock> up_blocks;
  Norm norm_out;
  Conv conv_out;
  size_t bytes = 0;
};

// Reads every decoder tensor of `source`, converts it and uploads it in backend.compute_dtype().
VaeWeights load_weights(Backend& backend, const VaeSource& source);
// Random weights of `config`, bound the same way (see VaeDecoder::random).
VaeWeights random_weights(Backend& backend, const VaeConfig& config, uint64_t seed);

}  // namespace paradit::vae
