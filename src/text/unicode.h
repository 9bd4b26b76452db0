// Character properties the tokenizers' rules are written in: general category, white space, lower-casing,
// NFC and grapheme clusters. Data from unicode_tables.cpp (Python's unicodedata, the reference's own).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace paradit::text::unicode {

// Order fixed by the generator (CATEGORIES in tools/make_tokenizer_fixtures.py).
enum class Category : uint8_t {
  Cn, Lu, Ll, Lt, Lm, Lo, Mn, Mc, Me, Nd, Nl, No, Pc, Pd, Ps, Pe, Pi, Pf, Po, Sm, Sc, Sk, So, Zs, Zl, Zp,
  Cc, Cf, Cs, Co,
};

Category category(char32_t c);
bool is_letter(char32_t c);  // \p{L}
bool is_number(char32_t c);  // \p{N}
bool is_other(char32_t c);   // C*: Cc Cf Cs Co Cn
// The White_Space property: \s of the regex module and of Oniguruma, Rust's char::is_whitespace.
bool is_white_space(char32_t c);
// Python's str.isspace(): White_Space plus U+001C..U+001F.
bool is_python_space(char32_t c);

// Full lower-case mapping of one code point, without context (Rust's char::to_lowercase, which the tokenizers
// library's Lowercase normalizer applies char by char): U+0130 gives two code points, Σ always σ.
void append_lower(char32_t c, std::u32string& out);
// Python's str.lower(): the same, plus the Final_Sigma rule (Σ at the end of a word becomes ς).
std::u32string python_lower(std::u32string_view s);

// Canonical composition (NFC), as unicodedata.normalize("NFC") and Rust's unicode-normalization compute it.
std::u32string nfc(std::u32string_view s);

// Extended grapheme clusters (UAX #29): the end offset of each cluster, in order. GB9c (Indic conjuncts,
// Unicode 15.1) is not applied: see grapheme.cpp for why no tokenizer result here depends on it.
std::vector<size_t> grapheme_cluster_ends(std::u32string_view s);

}  // namespace paradit::text::unicode
