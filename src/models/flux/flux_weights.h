// The FLUX transformer's weights on a backend, bound once from their internal (BFL) names to the places the
// forward reads them, so that no name is looked up at run time. Under tensor parallelism (FluxTensorShard) each
// tensor is this rank's slice of it, and the shapes below are the local ones: H heads → the rank's heads, 4D MLP
// columns → its share, D of a row-parallel input → its columns.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "paradit/backend/backend.h"
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

// What a tensor-parallel rank holds of one weight: all of it, ranges of its rows (dim 0) or of its columns
// (dim 1) side by side, or nothing (the bias of a row-parallel linear on every rank but tp rank 0).
struct WeightSlice {
  enum class Kind { kWhole, kRows, kColumns, kNone };
  struct Range {
    int64_t start, count;
  };
  Kind kind = Kind::kWhole;
  std::vector<Range> ranges;

  int dim() const { return kind == Kind::kColumns ? 1 : 0; }
  // The local shape of a tensor of shape `full`.
  Shape shape(const Shape& full) const;
  // The slice of a host tensor, contiguous, in its dtype: a view when one range of rows (or all of it) is asked,
  // else the ranges copied side by side.
  Tensor host(const Tensor& full) const;
  // The slice of a tensor on `backend`, in a fresh contiguous tensor.
  Tensor device(Backend& backend, const Tensor& full) const;
};

// Which heads and MLP columns tensor-parallel rank shard.rank holds (FluxTensorShard), and so which slice of
// each weight.
struct TensorParallelLayout {
  TensorParallelLayout(const FluxConfig& config, FluxTensorShard shard);

  FluxTensorShard shard;
  int64_t D, d;                    // width, head dim
  int64_t head_start, heads;       // this rank's heads
  int64_t mlp_start, mlp;          // this rank's MLP columns of 4D
  int64_t attention() const { return heads * d; }  // this rank's attention width

  // The slice of the weight named `name` (BFL names) of shape `full`.
  WeightSlice slice(const std::string& name, const Shape& full) const;
};

// Makes the device tensor of one weight (uploaded or random), given its internal name, its whole shape and the
// slice of it this rank holds; undefined for WeightSlice::Kind::kNone.
using WeightSource = std::function<Tensor(const std::string& name, const Shape& shape, const WeightSlice& slice)>;

// Calls make once for every tensor of config.tensor_shapes() but those of blocks outside `blocks`, and binds the
// results. The blocks outside the range stay empty (a PipeFusion stage holds only its own).
FluxWeights build_weights(const FluxConfig& config, const TensorParallelLayout& layout, const WeightSource& make,
                          FluxBlockRange blocks = {});

// The block index (FluxBlockRange numbering) a tensor name belongs to, or −1 for the embedders and final layer.
int block_of_tensor(const FluxConfig& config, const std::string& name);

}  // namespace paradit::flux
