#include "text/pad_truncate.h"

#include <algorithm>

#include "paradit/core/status.h"

namespace paradit::text {

TokenizedPrompt pad_and_truncate(const std::vector<int32_t>& prefix, const std::vector<int32_t>& content,
                                 const std::vector<int32_t>& suffix, int max_length, int32_t pad_id) {
  const int specials = static_cast<int>(prefix.size() + suffix.size());
  PD_REQUIRE(max_length > specials, "max_length ", max_length, " leaves no room for text next to the ", specials,
             " special token(s)");
  TokenizedPrompt out;
  out.untruncated_length = specials + static_cast<int>(content.size());
  const size_t keep = std::min<size_t>(content.size(), static_cast<size_t>(max_length - specials));
  out.ids.reserve(max_length);
  out.ids.insert(out.ids.end(), prefix.begin(), prefix.end());
  out.ids.insert(out.ids.end(), content.begin(), content.begin() + keep);
  out.ids.insert(out.ids.end(), suffix.begin(), suffix.end());
  out.ids.resize(max_length, pad_id);
  return out;
}

}  // namespace paradit::text
