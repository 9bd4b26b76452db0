// The token ids a text encoder takes for one prompt, padded or truncated to a fixed length.
#pragma once

#include <cstdint>
#include <vector>

namespace paradit {

struct TokenizedPrompt {
  // Exactly the requested length: special tokens, then the prompt's tokens (cut to fit), then padding.
  std::vector<int32_t> ids;
  // How many ids the prompt needs without truncation, special tokens included (what transformers returns with
  // padding="longest"). The FLUX pipeline warns when this exceeds the length: text past it is ignored.
  int untruncated_length = 0;

  bool truncated() const { return untruncated_length > static_cast<int>(ids.size()); }
};

}  // namespace paradit
