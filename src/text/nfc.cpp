// NFC: full canonical decomposition, canonical ordering, canonical composition (UAX #15).
#include <algorithm>
#include <unordered_map>

#include "text/unicode.h"
#include "text/unicode_tables.h"

namespace paradit::text::unicode {
namespace {

// Hangul syllables decompose and compose by arithmetic, not by table (Unicode ch. 3.12).
constexpr char32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr char32_t kLCount = 19, kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount, kSCount = kLCount * kNCount;

uint8_t combining_class(char32_t c) {
  const auto* begin = tables::kCombiningStarts;
  const auto* it = std::upper_bound(begin, begin + tables::kCombiningStartsSize, static_cast<uint32_t>(c));
  return tables::kCombiningValues[it - begin - 1];
}

const tables::Decomposition* find_decomposition(char32_t c) {
  const auto* begin = tables::kDecompositions;
  const auto* end = begin + tables::kDecompositionsSize;
  const auto* it = std::lower_bound(begin, end, c, [](const tables::Decomposition& d, char32_t v) { return d.cp < v; });
  return (it != end && it->cp == c) ? it : nullptr;
}

void decompose(char32_t c, std::u32string& out) {
  if (c >= kSBase && c < kSBase + kSCount) {
    const char32_t s = c - kSBase;
    out.push_back(kLBase + s / kNCount);
    out.push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount != 0) out.push_back(kTBase + s % kTCount);
    return;
  }
  const tables::Decomposition* d = find_decomposition(c);
  if (d == nullptr) {
    out.push_back(c);
    return;
  }
  decompose(d->first, out);
  if (d->second != 0) decompose(d->second, out);
}

// Primary composites keyed by (first << 21 | second); built once from the decomposition table.
const std::unordered_map<uint64_t, char32_t>& composition_pairs() {
  static const std::unordered_map<uint64_t, char32_t> pairs = [] {
    std::unordered_map<uint64_t, char32_t> m;
    for (size_t i = 0; i < tables::kDecompositionsSize; ++i) {
      const auto& d = tables::kDecompositions[i];
      if (d.composable) m[(static_cast<uint64_t>(d.first) << 21) | d.second] = d.cp;
    }
    return m;
  }();
  return pairs;
}

bool compose(char32_t a, char32_t b, char32_t* out) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount) {
    *out = kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
    return true;
  }
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase && b < kTBase + kTCount) {
    *out = a + (b - kTBase);
    return true;
  }
  const auto& pairs = composition_pairs();
  const auto it = pairs.find((static_cast<uint64_t>(a) << 21) | b);
  if (it == pairs.end()) return false;
  *out = it->second;
  return true;
}

}  // namespace

std::u32string nfc(std::u32string_view s) {
  std::u32string d;
  d.reserve(s.size());
  for (char32_t c : s) decompose(c, d);
  // Canonical ordering: a stable sort of each run of non-starters by combining class.
  for (size_t i = 0; i < d.size();) {
    if (combining_class(d[i]) == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < d.size() && combining_class(d[j]) != 0) ++j;
    std::stable_sort(d.begin() + i, d.begin() + j,
                     [](char32_t a, char32_t b) { return combining_class(a) < combining_class(b); });
    i = j;
  }
  // Composition: each character joins the last starter unless a character in between blocks it (one with
  // class 0, or with a class >= its own; after ordering, checking the last one in between suffices).
  std::u32string out;
  out.reserve(d.size());
  size_t starter = std::u32string::npos;
  uint8_t last_class = 0;
  for (char32_t c : d) {
    const uint8_t cc = combining_class(c);
    if (starter != std::u32string::npos) {
      const bool adjacent = out.size() == starter + 1;
      char32_t composed = 0;
      if ((adjacent || (last_class != 0 && last_class < cc)) && compose(out[starter], c, &composed)) {
        out[starter] = composed;
        continue;
      }
    }
    if (cc == 0) starter = out.size();
    last_class = cc;
    out.push_back(c);
  }
  return out;
}

}  // namespace paradit::text::unicode
