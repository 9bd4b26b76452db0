// Extended grapheme clusters (UAX #29), for the Precompiled normalizer of the tokenizers library, which looks
// whole clusters up in the SentencePiece charsmap when they are shorter than 6 UTF-8 bytes.
//
// GB9c (Indic conjunct clusters, Unicode 15.1) is left out on purpose: it only ever joins a consonant + virama
// (at least 6 bytes already) to a following consonant, and clusters of 6 bytes or more are normalized code
// point by code point anyway, so joining them or not gives the same text.
#include <algorithm>

#include "text/unicode.h"
#include "text/unicode_tables.h"

namespace paradit::text::unicode {
namespace {

// Order fixed by the generator (GRAPHEME_CLASSES); kLV there stands for LV and LVT (told apart below).
enum Gcb : uint8_t { kOther, kCR, kLF, kControl, kExtend, kZWJ, kRI, kPrepend, kSpacingMark, kL, kV, kT, kLV, kLVT };

Gcb grapheme_class(char32_t c) {
  const auto* begin = tables::kGraphemeStarts;
  const auto* it = std::upper_bound(begin, begin + tables::kGraphemeStartsSize, static_cast<uint32_t>(c));
  auto g = static_cast<Gcb>(tables::kGraphemeValues[it - begin - 1]);
  if (g == kLV && (c - 0xAC00) % 28 != 0) g = kLVT;  // Hangul syllables: LV when no trailing consonant
  return g;
}

bool extended_pictographic(char32_t c) {
  const auto* begin = tables::kExtendedPictographic;
  const auto* end = begin + tables::kExtendedPictographicSize;
  const auto* it = std::upper_bound(begin, end, c, [](char32_t v, const tables::Range& r) { return v < r.first; });
  return it != begin && c <= (it - 1)->last;
}

}  // namespace

std::vector<size_t> grapheme_cluster_ends(std::u32string_view s) {
  std::vector<size_t> ends;
  if (s.empty()) return ends;
  Gcb prev = grapheme_class(s[0]);
  bool pict_seq = extended_pictographic(s[0]);  // inside ExtPict Extend* (ZWJ)? for GB11
  bool after_pict_zwj = false;
  int ri_run = prev == kRI ? 1 : 0;  // regional indicators since the last non-RI, for GB12/13
  for (size_t i = 1; i < s.size(); ++i) {
    const Gcb cur = grapheme_class(s[i]);
    const bool pict = extended_pictographic(s[i]);
    bool join;
    if (prev == kCR && cur == kLF) {
      join = true;  // GB3
    } else if (prev == kCR || prev == kLF || prev == kControl || cur == kCR || cur == kLF || cur == kControl) {
      join = false;  // GB4, GB5
    } else if (prev == kL && (cur == kL || cur == kV || cur == kLV || cur == kLVT)) {
      join = true;  // GB6
    } else if ((prev == kLV || prev == kV) && (cur == kV || cur == kT)) {
      join = true;  // GB7
    } else if ((prev == kLVT || prev == kT) && cur == kT) {
      join = true;  // GB8
    } else if (cur == kExtend || cur == kZWJ || cur == kSpacingMark || prev == kPrepend) {
      join = true;  // GB9, GB9a, GB9b
    } else if (after_pict_zwj && pict) {
      join = true;  // GB11
    } else if (prev == kRI && cur == kRI) {
      join = ri_run % 2 == 1;  // GB12, GB13: pairs
    } else {
      join = false;  // GB999
    }
    if (!join) ends.push_back(i);
    // State for GB11: ExtPict Extend* ZWJ x ExtPict.
    after_pict_zwj = pict_seq && cur == kZWJ;
    pict_seq = pict || (pict_seq && cur == kExtend);
    ri_run = cur == kRI ? ri_run + 1 : 0;
    prev = cur;
  }
  ends.push_back(s.size());
  return ends;
}

}  // namespace paradit::text::unicode
