#include "flux_fixture.h"

#include "test_util.h"

namespace paradit::test {

std::vector<float> host_values(const Tensor& t) {
  const Tensor c = to_contiguous_f32(t);
  return std::vector<float>(c.data_as<float>(), c.data_as<float>() + c.numel());
}

FluxInputs flux_fixture_inputs(Backend& backend, const SafetensorsFile& io) {
  FluxInputs in;
  in.hidden_states = backend.upload(io.get("hidden_states"), backend.compute_dtype());
  in.encoder_hidden_states = backend.upload(io.get("encoder_hidden_states"), backend.compute_dtype());
  in.pooled_projections = backend.upload(io.get("pooled_projections"), backend.compute_dtype());
  in.timestep = host_values(io.get("timestep"));
  if (io.contains("guidance")) in.guidance = host_values(io.get("guidance"));
  in.img_ids = io.get("img_ids");
  in.txt_ids = io.get("txt_ids");
  return in;
}

}  // namespace paradit::test
