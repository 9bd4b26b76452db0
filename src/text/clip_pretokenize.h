// CLIP's text rules before BPE: normalization and the pre-tokenizer regex, in the two flavours transformers
// has (see include/paradit/text/clip_tokenizer.h). Input is one stretch of prompt between special tokens.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace paradit::text {

// transformers 4's CLIPTokenizer without ftfy: BasicTokenizer(strip_accents=False, do_split_on_punc=False)
// (drops NUL, U+FFFD and category C* except tab/CR/LF; Zs and tab/CR/LF to space; spaces around CJK
// ideographs; NFC; split on Python white space; str.lower() per word), then CLIP's regex (IGNORECASE).
std::vector<std::u32string> clip_pieces_slow(std::u32string_view text);

// The tokenizers library's normalizer for CLIP: NFC, every run of White_Space to one " ", then lower case
// per code point (no final sigma).
std::u32string clip_normalize_fast(std::u32string_view text);
// Its pre-tokenizer: CLIP's regex (case-sensitive; the text is already lower case), then the GPT-2 regex the
// ByteLevel step runs inside each match (it only splits the "<|...|>" spellings).
std::vector<std::u32string> clip_pieces_fast(std::u32string_view normalized);

}  // namespace paradit::text
