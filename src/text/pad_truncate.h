// Assembling the fixed-length id list both tokenizers return (transformers' truncation and padding rules).
#pragma once

#include <cstdint>
#include <vector>

#include "paradit/text/tokenized_prompt.h"

namespace paradit::text {

// prefix + content + suffix, with content cut so the whole fits max_length (truncation="longest_first" on
// one sequence, truncation_side="right"), then right-padded with pad_id. Throws kInvalidArgument when
// max_length cannot even hold the special tokens.
TokenizedPrompt pad_and_truncate(const std::vector<int32_t>& prefix, const std::vector<int32_t>& content,
                                 const std::vector<int32_t>& suffix, int max_length, int32_t pad_id);

}  // namespace paradit::text
