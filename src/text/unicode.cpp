#include "text/unicode.h"

#include <algorithm>

#include "text/unicode_tables.h"

namespace paradit::text::unicode {
namespace {

bool in_ranges(const tables::Range* ranges, size_t n, char32_t c) {
  const auto* end = ranges + n;
  const auto* it = std::upper_bound(ranges, end, c, [](char32_t v, const tables::Range& r) { return v < r.first; });
  return it != ranges && c <= (it - 1)->last;
}

char32_t simple_lower(char32_t c) {
  using tables::LowerRun;
  const auto* begin = tables::kLowerRuns;
  const auto* end = begin + tables::kLowerRunsSize;
  const auto* it = std::upper_bound(begin, end, c, [](char32_t v, const LowerRun& r) { return v < r.first; });
  if (it == begin) return c;
  const LowerRun& r = *(it - 1);
  if (c > r.last) return c;
  if (r.stride == 0 ? c != r.first : (c - r.first) % r.stride != 0) return c;
  return static_cast<char32_t>(static_cast<int32_t>(c) + r.delta);
}

constexpr char32_t kCapitalSigma = 0x03A3;

bool case_ignorable(char32_t c) { return in_ranges(tables::kCaseIgnorable, tables::kCaseIgnorableSize, c); }
bool cased_not_ignorable(char32_t c) {
  return in_ranges(tables::kCasedNotIgnorable, tables::kCasedNotIgnorableSize, c);
}

// Python's rule (Objects/unicodeobject.c handle_capital_sigma): Σ is final when, skipping Case_Ignorable code
// points, a Cased one precedes it and none follows. The tables hold Case_Ignorable and "Cased but not
// Case_Ignorable", which is all the skipping scan can observe.
bool final_sigma(std::u32string_view s, size_t i) {
  size_t j = i;
  while (j > 0 && case_ignorable(s[j - 1])) --j;
  if (j == 0 || !cased_not_ignorable(s[j - 1])) return false;
  size_t k = i + 1;
  while (k < s.size() && case_ignorable(s[k])) ++k;
  return k == s.size() || !cased_not_ignorable(s[k]);
}

}  // namespace

Category category(char32_t c) {
  const auto* begin = tables::kCategoryStarts;
  const auto* it = std::upper_bound(begin, begin + tables::kCategoryStartsSize, static_cast<uint32_t>(c));
  return static_cast<Category>(tables::kCategoryValues[it - begin - 1]);
}

bool is_letter(char32_t c) {
  const Category k = category(c);
  return k >= Category::Lu && k <= Category::Lo;
}

bool is_number(char32_t c) {
  const Category k = category(c);
  return k >= Category::Nd && k <= Category::No;
}

bool is_other(char32_t c) {
  const Category k = category(c);
  return k == Category::Cn || k >= Category::Cc;
}

bool is_white_space(char32_t c) {
  switch (c) {
    case 0x09: case 0x0A: case 0x0B: case 0x0C: case 0x0D: case 0x20: case 0x85: case 0xA0: case 0x1680:
    case 0x2028: case 0x2029: case 0x202F: case 0x205F: case 0x3000:
      return true;
    default:
      return c >= 0x2000 && c <= 0x200A;
  }
}

bool is_python_space(char32_t c) { return is_white_space(c) || (c >= 0x1C && c <= 0x1F); }

void append_lower(char32_t c, std::u32string& out) {
  if (c == 0x0130) {  // the one unconditional multi-code-point lower case (SpecialCasing.txt)
    out += U"i\u0307";
    return;
  }
  out.push_back(simple_lower(c));
}

std::u32string python_lower(std::u32string_view s) {
  std::u32string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == kCapitalSigma) {
      out.push_back(final_sigma(s, i) ? 0x03C2 : 0x03C3);
    } else {
      append_lower(s[i], out);
    }
  }
  return out;
}

}  // namespace paradit::text::unicode
