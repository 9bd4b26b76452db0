// Building the T5 pipeline from either file FLUX.1's tokenizer_2 folder holds.
#pragma once

#include <string>

#include "text/t5_pipeline.h"

namespace paradit::text {

// tokenizer.json, with the steps it lists (as tokenizers.Tokenizer.from_file runs them).
T5Pipeline t5_pipeline_from_tokenizer_json(const std::string& path);
// spiece.model, converted as transformers' T5Tokenizer does: the pieces (scores as doubles) then `extra_ids`
// sentinels, the Precompiled normalizer, WhitespaceSplit + Metaspace(prepend always), "</s>" appended,
// <pad>/</s>/<unk>/<extra_id_N> matched in the raw text.
T5Pipeline t5_pipeline_from_sentencepiece(const std::string& path, int extra_ids);

}  // namespace paradit::text
