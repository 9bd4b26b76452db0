// The FLUX transformer fixtures made by tools/make_fixtures.py: their inputs as a FluxInputs.
#pragma once

#include <vector>

#include "paradit/io/safetensors.h"
#include "paradit/models/flux_transformer.h"

namespace paradit::test {

// Every element of a host tensor of any dtype/strides, as f32.
std::vector<float> host_values(const Tensor& t);

// The forward's inputs from a fixture's io.safetensors, as device tensors of `backend`.
FluxInputs flux_fixture_inputs(Backend& backend, const SafetensorsFile& io);

// One forward's inputs on the host, whole sequence, in f32: what parallel tests cut into each rank's rows.
struct FluxHostInputs {
  Tensor hidden, text, pooled, img_ids, txt_ids;
  std::vector<float> timestep, guidance;
  int64_t B() const { return hidden.size(0); }
  int64_t N() const { return img_ids.size(0); }
  int64_t T() const { return txt_ids.size(0); }
};
FluxHostInputs flux_host_inputs(const SafetensorsFile& io);
// The device inputs of the rows `rows` of h (all of them when rows covers the sequence).
FluxInputs flux_device_inputs(Backend& backend, const FluxHostInputs& h, const FluxShardRows& rows);

}  // namespace paradit::test
