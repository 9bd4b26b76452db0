// Which rows of FLUX's joint [text; image] sequence a sequence-parallel rank holds.
#include <algorithm>

#include "paradit/core/status.h"
#include "paradit/models/flux_transformer.h"
#include "paradit/parallel/sequence_shard.h"

namespace paradit {

FluxShardRows flux_shard_rows(int64_t text_tokens, int64_t image_tokens, int parts, int part) {
  PD_REQUIRE(text_tokens >= 0 && image_tokens >= 0, "flux_shard_rows: negative token count (T=", text_tokens,
             ", N=", image_tokens, ")");
  const SequenceShard shard(text_tokens + image_tokens, parts);
  const int64_t begin = shard.start(part), end = shard.end(part);
  const int64_t T = text_tokens;
  FluxShardRows r;
  r.text_start = std::min(begin, T);
  r.text_count = std::min(end, T) - r.text_start;
  r.image_start = std::max(begin, T) - T;
  r.image_count = std::max(end, T) - T - r.image_start;
  return r;
}

}  // namespace paradit
