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

FluxHostInputs flux_host_inputs(const SafetensorsFile& io) {
  FluxHostInputs in{to_contiguous_f32(io.get("hidden_states")),
                    to_contiguous_f32(io.get("encoder_hidden_states")),
                    to_contiguous_f32(io.get("pooled_projections")),
                    io.get("img_ids"),
                    io.get("txt_ids"),
                    host_values(io.get("timestep")),
                    {}};
  if (io.contains("guidance")) in.guidance = host_values(io.get("guidance"));
  return in;
}

FluxInputs flux_device_inputs(Backend& backend, const FluxHostInputs& h, const FluxShardRows& rows) {
  FluxInputs in;
  in.hidden_states = backend.upload(h.hidden.slice(1, rows.image_start, rows.image_count), backend.compute_dtype());
  in.encoder_hidden_states =
      backend.upload(h.text.slice(1, rows.text_start, rows.text_count), backend.compute_dtype());
  in.pooled_projections = backend.upload(h.pooled, backend.compute_dtype());
  in.timestep = h.timestep;
  in.guidance = h.guidance;
  in.img_ids = h.img_ids;
  in.txt_ids = h.txt_ids;
  return in;
}

}  // namespace paradit::test
