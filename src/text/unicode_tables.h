// Unicode data tables (generated into unicode_tables.cpp by tools/make_tokenizer_fixtures.py --unicode-tables).
//
// They come from the same Python unicodedata and regex module that the reference tokenizers use, so the C++
// port classifies characters exactly as the fixtures' transformers run did. Lookups live in unicode.cpp.
#pragma once

#include <cstddef>
#include <cstdint>

namespace paradit::text::tables {

struct LowerRun {
  uint32_t first, last, stride;  // stride 0: a single code point
  int32_t delta;
};
struct Range {
  uint32_t first, last;
};
struct Decomposition {
  uint32_t cp, first, second;  // second == 0: a singleton decomposition
  uint32_t composable;         // canonical composition of (first, second) gives cp
};

extern const uint32_t kCategoryStarts[];
extern const uint8_t kCategoryValues[];
extern const size_t kCategoryStartsSize;
extern const LowerRun kLowerRuns[];
extern const size_t kLowerRunsSize;
extern const Range kCaseIgnorable[];
extern const size_t kCaseIgnorableSize;
extern const Range kCasedNotIgnorable[];
extern const size_t kCasedNotIgnorableSize;
extern const uint32_t kCombiningStarts[];
extern const uint8_t kCombiningValues[];
extern const size_t kCombiningStartsSize;
extern const Decomposition kDecompositions[];
extern const size_t kDecompositionsSize;
extern const uint32_t kGraphemeStarts[];
extern const uint8_t kGraphemeValues[];
extern const size_t kGraphemeStartsSize;
extern const Range kExtendedPictographic[];
extern const size_t kExtendedPictographicSize;

}  // namespace paradit::text::tables
