// Where each internal (BFL-named) FLUX tensor lives in a diffusers FluxTransformer2DModel state dict.
// This is the inverse of diffusers' convert_flux_transformer_checkpoint_to_diffusers (single_file_utils.py).
#pragma once

#include <string>
#include <vector>

namespace paradit::io {

struct DiffusersSource {
  // The diffusers keys whose rows, concatenated in this order, make the internal tensor.
  std::vector<std::string> keys;
  // With several keys: each key's row count in units of the hidden width D (q, k, v: 1; the MLP input of a
  // single block: 4). Empty with one key, which then holds all the rows.
  std::vector<int> rows_in_hidden;
  // The one stored tensor's two row halves come in the other order: diffusers keeps the final layer's
  // modulation as (scale; shift), BFL as (shift; scale).
  bool swap_halves = false;
};

// Throws Error(kInternal) for a name that is not an internal FLUX tensor name.
DiffusersSource diffusers_source(const std::string& internal_name);

}  // namespace paradit::io
