// SentencePiece's precompiled_charsmap (the nmt_nfkc normalization rules) and the tokenizers library's
// "Precompiled" normalizer built on it.
//
// Blob layout (sentencepiece normalizer.cc): uint32 little-endian trie size in bytes, a Darts-clone double
// array of that many bytes (uint32 units), then the replacement strings, each NUL-terminated. A key (UTF-8
// bytes of one or more characters) found in the trie maps to the offset of its replacement.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace paradit::text {

class PrecompiledCharsmap {
 public:
  // Throws kCorruptData naming `name` when the blob is malformed.
  PrecompiledCharsmap(std::string_view blob, std::string name);

  // The replacement of the shortest key that is a prefix of `chunk` (the tokenizers library's
  // Precompiled::transform takes results[0] of the prefix search), or false when no key matches.
  // Like that implementation, the search stops at a NUL byte.
  bool shortest_prefix_replacement(std::string_view chunk, std::string_view* replacement) const;

  // The tokenizers library's Precompiled normalizer: per grapheme cluster, a cluster shorter than 6 bytes
  // whose start matches a key is replaced whole by that key's replacement (even when the key is shorter than
  // the cluster); otherwise each code point is looked up alone.
  std::u32string normalize(std::u32string_view text) const;

 private:
  std::vector<uint32_t> units_;  // the double array
  std::string normalized_;       // replacement strings
  std::string name_;
};

}  // namespace paradit::text
