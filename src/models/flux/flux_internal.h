// Pieces of the FLUX transformer that tests check one by one against diffusers' intermediates.
#pragma once

#include <array>
#include <functional>
#include <string>
#include <vector>

#include "paradit/models/flux_transformer.h"

namespace paradit::flux {

// diffusers' get_timestep_embedding(t, dim, flip_sin_to_cos=True, downscale_freq_shift=0, max_period=10000),
// in fp32 as torch computes it: row b = [cos(t_b·f_k), sin(t_b·f_k)] (cos half first), f_k = exp(-ln(10⁴)·k/(dim/2)),
// k < dim/2. t is the embedded scalar itself (1000·σ for FLUX). Host f32 [t.size(), dim].
Tensor timestep_embedding(const std::vector<float>& t, int dim);

// FluxPosEmbed over ids = cat(txt_ids, img_ids) (text rows first): for each axis a of width axes_dims[a], the
// angle pos_a·theta^(-2j/d_a) in float64, cos and sin cast to f32 and repeated for the lane pair (2j, 2j+1);
// axes side by side. txt_ids [T, 3], img_ids [N, 3]: host f32. cos, sin: host f32 [T+N, Σ axes_dims].
struct RopeTables {
  Tensor cos, sin;
};
RopeTables rope_tables(const Tensor& txt_ids, const Tensor& img_ids, const std::array<int, 3>& axes_dims,
                       double theta);

// Receives named intermediates of a forward: a device tensor, valid only during the call (its buffer is reused
// by later blocks). Names follow the fixtures: x_embedder_out, context_embedder_out, temb, double{i}_encoder,
// double{i}_hidden, single{i}_out, norm_out_out.
using FluxTap = std::function<void(const std::string& name, const Tensor& value)>;

// FluxTransformer::forward of a model made by FluxTransformer::load or ::random, reporting to tap.
Tensor forward_with_tap(FluxTransformer& model, const FluxInputs& in, const FluxTap& tap);

}  // namespace paradit::flux
