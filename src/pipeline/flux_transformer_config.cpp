// flux_transformer_config: the transformer's config from a pipeline's sources, before any rank loads it.
#include "paradit/io/flux_checkpoint.h"
#include "paradit/pipeline/flux_pipeline.h"
#include "pipeline/flux_sources.h"

namespace paradit {

FluxConfig flux_transformer_config(const FluxPipelineSources& sources) {
  const flux_pipeline::ResolvedSources resolved = flux_pipeline::resolve_sources(sources);
  return FluxCheckpoint::open(resolved.transformer, resolved.transformer_config).config();
}

}  // namespace paradit
