#include "text/clip_pretokenize.h"

#include "text/unicode.h"

namespace paradit::text {
namespace {

using unicode::is_letter;
using unicode::is_number;
using unicode::is_white_space;

bool is_symbol(char32_t c) { return !is_white_space(c) && !is_letter(c) && !is_number(c); }

// Case-insensitive equality against a lower-case ASCII pattern character, as the regex module's IGNORECASE
// sees text that str.lower() already produced: the only other code point left that folds to an ASCII letter is
// U+017F LATIN SMALL LETTER LONG S (≡ s). Kelvin and Angstrom signs were lowered to k and å before.
bool same_letter(char32_t c, char32_t pattern, bool ignore_case) {
  return c == pattern || (ignore_case && pattern == U's' && c == 0x017F);
}

size_t match_literal(std::u32string_view text, size_t i, std::u32string_view literal, bool ignore_case) {
  if (text.size() - i < literal.size()) return 0;
  for (size_t k = 0; k < literal.size(); ++k) {
    if (!same_letter(text[i + k], literal[k], ignore_case)) return 0;
  }
  return literal.size();
}

// CLIP's pattern, tried alternative by alternative at each position like the regex engines do:
//   <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
// White space between matches is dropped (findall / Split with behavior "removed", invert).
//
// With IGNORECASE (the slow class) the regex module lets U+0345 COMBINING GREEK YPOGEGRAMMENI, whose case
// folding is a letter, match neither [\p{L}] nor [^\s\p{L}\p{N}]: findall skips it like white space.
std::vector<std::u32string> clip_regex(std::u32string_view text, bool ignore_case) {
  static constexpr std::u32string_view kAlternatives[] = {U"<|startoftext|>", U"<|endoftext|>", U"'s", U"'t",
                                                         U"'re", U"'ve", U"'m", U"'ll", U"'d"};
  std::vector<std::u32string> out;
  size_t i = 0;
  while (i < text.size()) {
    size_t n = 0;
    for (std::u32string_view alt : kAlternatives) {
      if ((n = match_literal(text, i, alt, ignore_case)) != 0) break;
    }
    if (n == 0 && is_letter(text[i])) {
      while (i + n < text.size() && is_letter(text[i + n])) ++n;
    } else if (n == 0 && is_number(text[i])) {
      n = 1;
    } else if (n == 0) {
      while (i + n < text.size() && is_symbol(text[i + n]) && !(ignore_case && text[i + n] == 0x0345)) ++n;
    }
    if (n == 0) {  // white space (and U+0345 under IGNORECASE): not part of any match
      ++i;
      continue;
    }
    out.emplace_back(text.substr(i, n));
    i += n;
  }
  return out;
}

// GPT-2's pattern on text without white space: 's|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}+|[^\s\p{L}\p{N}]+.
void gpt2_split(std::u32string_view text, std::vector<std::u32string>& out) {
  static constexpr std::u32string_view kContractions[] = {U"'s", U"'t", U"'re", U"'ve", U"'m", U"'ll", U"'d"};
  size_t i = 0;
  while (i < text.size()) {
    size_t n = 0;
    for (std::u32string_view alt : kContractions) {
      if ((n = match_literal(text, i, alt, false)) != 0) break;
    }
    if (n == 0) {
      const char32_t c = text[i];
      auto same_class = is_letter(c) ? is_letter : is_number(c) ? is_number : is_symbol;
      while (i + n < text.size() && same_class(text[i + n])) ++n;
    }
    out.emplace_back(text.substr(i, n));
    i += n;
  }
}

// The CJK Unified Ideographs blocks BasicTokenizer pads with spaces (not kana, not hangul).
bool is_cjk_ideograph(char32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
         (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

}  // namespace

std::vector<std::u32string> clip_pieces_slow(std::u32string_view text) {
  // BasicTokenizer._clean_text and _tokenize_chinese_chars.
  std::u32string cleaned;
  cleaned.reserve(text.size());
  for (char32_t c : text) {
    const bool tab_or_newline = c == U'\t' || c == U'\n' || c == U'\r';
    if (c == 0 || c == 0xFFFD || (!tab_or_newline && unicode::is_other(c))) continue;
    if (tab_or_newline || unicode::category(c) == unicode::Category::Zs) {
      cleaned.push_back(U' ');
    } else if (is_cjk_ideograph(c)) {
      cleaned += U' ';
      cleaned += c;
      cleaned += U' ';
    } else {
      cleaned.push_back(c);
    }
  }
  const std::u32string normalized = unicode::nfc(cleaned);
  // whitespace_tokenize (str.split()), lower() per word; the words are joined by single spaces before the
  // regex, which never matches across a space, so each word can go through the regex alone.
  std::vector<std::u32string> pieces;
  size_t i = 0;
  while (i < normalized.size()) {
    if (unicode::is_python_space(normalized[i])) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < normalized.size() && !unicode::is_python_space(normalized[j])) ++j;
    const std::u32string word = unicode::python_lower(std::u32string_view(normalized).substr(i, j - i));
    for (auto& p : clip_regex(word, /*ignore_case=*/true)) pieces.push_back(std::move(p));
    i = j;
  }
  return pieces;
}

std::u32string clip_normalize_fast(std::u32string_view text) {
  const std::u32string composed = unicode::nfc(text);
  std::u32string out;
  out.reserve(composed.size());
  for (size_t i = 0; i < composed.size(); ++i) {
    if (is_white_space(composed[i])) {
      if (i == 0 || !is_white_space(composed[i - 1])) out.push_back(U' ');
      continue;
    }
    unicode::append_lower(composed[i], out);
  }
  return out;
}

std::vector<std::u32string> clip_pieces_fast(std::u32string_view normalized) {
  std::vector<std::u32string> out;
  for (const std::u32string& piece : clip_regex(normalized, /*ignore_case=*/false)) gpt2_split(piece, out);
  return out;
}

}  // namespace paradit::text
