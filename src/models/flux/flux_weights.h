// The FLUX transformer's weights on a backend, bound once from their internal (BFL) names to the places the
// forward reads them, so that no name is looked up at run time.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "paradit/io/flux_checkpoint.h"
#include "paradit/models/flux_transformer.h"

namespace paradit::flux {

struct Linear {
  Tensor w;  // [out, in]
  Tensor b;  // [out]
};

// One stream (image or text) of a double-stream block.
struct StreamWeights {
  Linear mod;              // [6D, D]: shift, scale, gate of attention; shift, scale, gate of the MLP
  Linear qkv;              // [3D, D]: rows q; k; v, each head-major
  Tensor q_norm, k_norm;   // [d]
  Linear proj;             // [D, D]
  Linear mlp_in;           // [4D, D]
  Linear mlp_out;          // [D, 4D]
};

struct DoubleBlockWeights {
  StreamWeights img, txt;
};

struct SingleBlockWeights {
  Linear mod;             // [3D, D]: shift, scale, gate
  Linear qkv;             // rows [0, 3D) of linear1
  Linear mlp_in;          // rows [3D, 7D) of linear1
  Tensor q_norm, k_norm;  // [d]
  Linear out;             // linear2 [D, 5D] over [attention | MLP]
};

struct FluxWeights {
  Linear img_in, txt_in;
  Linear time_in, time_out;          // timestep MLP 256 → D → D
  Linear guidance_in, guidance_out;  // guidance MLP (undefined without guidance_embeds)
  Linear vector_in, vector_out;      // pooled-text MLP
  std::vector<DoubleBlockWeights> double_blocks;
  std::vector<SingleBlockWeights> single_blocks;
  Linear final_mod;  // [2D, D]: rows shift; scale (BFL order)
  Linear final_out;  // [out_channels, D]
  size_t bytes = 0;  // every tensor, once
};

// Makes the device tensor of one weight (uploaded or random), given its internal name and shape.
using WeightSource = std::function<Tensor(const std::string& name, const Shape& shape)>;

// Calls make once for every tensor of config.tensor_shapes() but those of blocks outside `blocks`, and binds the
// results. The blocks outside the range stay empty (a PipeFusion stage holds only its own).
FluxWeights build_weights(const FluxConfig& config, const WeightSource& make, FluxBlockRange blocks = {});

// The block index (FluxBlockRange numbering) a tensor name belongs to, or −1 for the embedders and final layer.
int block_of_tensor(const FluxConfig& config, const std::string& name);

}  // namespace paradit::flux
