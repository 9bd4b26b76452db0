#include "runtime/merge_results.h"

#include <algorithm>

#include "paradit/core/status.h"
#include "paradit/pipeline/latents.h"

namespace paradit::runtime {

FluxResult merge_rank_results(const FluxRequest& request, std::vector<FluxRankResult>& parts, int encoder) {
  PD_CHECK(encoder >= 0 && encoder < int(parts.size()), encoder, " of ", parts.size());
  const FluxResult& lead = parts[size_t(encoder)].result;
  const int batch = request.batch_count, steps = lead.steps;
  FluxResult r;
  r.steps = steps;
  r.max_sequence_length = lead.max_sequence_length;
  r.warnings = lead.warnings;
  r.timings.encode_s = lead.timings.encode_s;
  r.timings.regions = parts[0].result.timings.regions;
  const Shape packed = flux_packed_latent_shape(batch, request.height, request.width);
  const int64_t per_image = packed[1] * packed[2];
  r.latents = Tensor::empty(packed, DType::kF32, cpu_allocator());
  r.images.resize(size_t(batch));
  r.seeds.resize(size_t(batch));
  r.timings.step_s.resize(size_t(batch) * size_t(steps));
  std::vector<bool> filled(size_t(batch), false);

  for (FluxRankResult& part : parts) {
    FluxResult& p = part.result;
    r.timings.denoise_s = std::max(r.timings.denoise_s, p.timings.denoise_s);
    r.timings.decode_s = std::max(r.timings.decode_s, p.timings.decode_s);
    PD_CHECK(p.images.size() == part.batch_indices.size() && p.seeds.size() == p.images.size() &&
             p.timings.step_s.size() == p.images.size() * size_t(steps));
    for (size_t j = 0; j < part.batch_indices.size(); ++j) {
      const int i = part.batch_indices[j];
      PD_CHECK(i >= 0 && i < batch && !filled[size_t(i)], "image ", i, " decoded twice or out of range");
      filled[size_t(i)] = true;
      r.images[size_t(i)] = std::move(p.images[j]);
      r.seeds[size_t(i)] = p.seeds[j];
      std::copy_n(p.latents.data_as<float>() + int64_t(j) * per_image, per_image,
                  r.latents.data_as<float>() + int64_t(i) * per_image);
      std::copy_n(p.timings.step_s.begin() + ptrdiff_t(j) * steps, steps,
                  r.timings.step_s.begin() + ptrdiff_t(i) * steps);
    }
  }
  PD_CHECK(std::all_of(filled.begin(), filled.end(), [](bool f) { return f; }), "an image was decoded by no rank");
  return r;
}

}  // namespace paradit::runtime
