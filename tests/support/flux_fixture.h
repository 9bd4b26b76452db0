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

}  // namespace paradit::test
