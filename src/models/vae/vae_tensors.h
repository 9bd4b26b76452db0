// The decoder's tensors as a configuration implies them: diffusers name, LDM name, stored (PyTorch) shape.
#pragma once

#include <string>
#include <vector>

#include "paradit/core/tensor.h"
#include "paradit/models/vae.h"

namespace paradit::vae {

enum class TensorKind {
  kConv3x3,  // [Cout, Cin, 3, 3]: permuted to [Cout, 3, 3, Cin] at load
  kConv1x1,  // [Cout, Cin, 1, 1]: squeezed to a Linear [Cout, Cin]
  kAttnProj,  // diffusers Linear [C, C]; LDM stores it as a 1×1 conv [C, C, 1, 1]
  kVector,    // biases, GroupNorm affine
};

struct TensorSpec {
  std::string diffusers;  // "decoder.up_blocks.0.resnets.1.conv2.weight"
  std::string ldm;        // "decoder.up.3.block.1.conv2.weight"
  std::string legacy;     // older diffusers attention names (query/key/value/proj_attn), else empty
  Shape shape;            // as diffusers stores it
  TensorKind kind;
};

// Every tensor the decoder reads, in a fixed order.
std::vector<TensorSpec> decoder_tensors(const VaeConfig& config);

}  // namespace paradit::vae
