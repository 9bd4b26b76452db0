// The T5 tokenizer as a pipeline of tokenizers-library steps, built either from tokenizer.json (whatever
// steps it lists, among those T5 files use) or from spiece.model (the steps transformers gives T5).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "text/added_tokens.h"
#include "text/precompiled_charsmap.h"
#include "text/unigram.h"

namespace paradit::text {

struct NormalizerStep {
  enum class Kind { kPrecompiled, kStrip, kReplace } kind = Kind::kPrecompiled;
  std::shared_ptr<const PrecompiledCharsmap> charsmap{};  // kPrecompiled
  bool strip_left = false, strip_right = false;          // kStrip (White_Space)
  // kReplace: a literal pattern, or (min_repeat > 0) a run of at least min_repeat copies of the one-code-point
  // `pattern` (the regex "X{n,}" / "X+"), or (any_white_space) a run of White_Space ("\s+").
  std::u32string pattern{}, content{};
  int min_repeat = 0;
  bool any_white_space = false;
};

struct PreTokenizerStep {
  enum class Kind { kWhitespaceSplit, kMetaspace } kind = Kind::kWhitespaceSplit;
  char32_t replacement = U'\u2581';  // kMetaspace
  bool prepend = true;               // prepend_scheme "always" (false: "never")
  bool split = true;
};

struct T5Pipeline {
  std::vector<LiteralToken> raw_tokens;   // added tokens matched in the raw text (normalized: false)
  std::vector<LiteralToken> norm_tokens;  // added tokens matched after normalization (normalized: true)
  std::vector<NormalizerStep> normalizers;
  std::vector<PreTokenizerStep> pre_tokenizers;
  std::optional<UnigramModel> model;
  std::vector<int32_t> prefix_ids, suffix_ids;  // the post-processor's special tokens around the text
  int32_t pad_id = 0;
  int32_t eos_id = -1;

  // The prompt's ids without the post-processor's special tokens.
  std::vector<int32_t> content_ids(const std::u32string& prompt) const;
};

}  // namespace paradit::text
