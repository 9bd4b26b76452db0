#include "text/precompiled_charsmap.h"

#include "paradit/core/status.h"
#include "text/unicode.h"
#include "text/utf8.h"

namespace paradit::text {
namespace {

// Darts-clone unit fields (darts.h: DoubleArrayUnit).
bool has_leaf(uint32_t u) { return (u >> 8) & 1; }
uint32_t value(uint32_t u) { return u & ((1u << 31) - 1); }
uint32_t label(uint32_t u) { return u & ((1u << 31) | 0xFF); }
uint32_t offset(uint32_t u) { return (u >> 10) << ((u & (1u << 9)) >> 6); }

}  // namespace

PrecompiledCharsmap::PrecompiledCharsmap(std::string_view blob, std::string name) : name_(std::move(name)) {
  if (blob.size() <= 4) PD_THROW(kCorruptData, name_, ": precompiled_charsmap of ", blob.size(), " bytes is broken");
  uint32_t trie_bytes = 0;
  for (int k = 3; k >= 0; --k) trie_bytes = (trie_bytes << 8) | static_cast<unsigned char>(blob[k]);
  if (trie_bytes > blob.size() - 4 || trie_bytes % 4 != 0 || trie_bytes == 0) {
    PD_THROW(kCorruptData, name_, ": precompiled_charsmap trie size ", trie_bytes, " does not fit its ",
             blob.size(), "-byte blob");
  }
  units_.resize(trie_bytes / 4);
  for (size_t i = 0; i < units_.size(); ++i) {
    uint32_t u = 0;
    for (int k = 3; k >= 0; --k) u = (u << 8) | static_cast<unsigned char>(blob[4 + 4 * i + k]);
    units_[i] = u;
  }
  normalized_ = std::string(blob.substr(4 + trie_bytes));
  utf8_decode(normalized_, name_ + ": precompiled_charsmap replacement strings");  // validates
}

bool PrecompiledCharsmap::shortest_prefix_replacement(std::string_view chunk, std::string_view* replacement) const {
  // Darts-clone commonPrefixSearch, stopping at the first (shortest) key found.
  auto unit = [&](size_t pos) {
    if (pos >= units_.size()) PD_THROW(kCorruptData, name_, ": precompiled_charsmap trie index out of range");
    return units_[pos];
  };
  size_t node = offset(unit(0));
  for (char ch : chunk) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == 0) return false;
    node ^= c;
    const uint32_t u = unit(node);
    if (label(u) != c) return false;
    node ^= offset(u);
    if (has_leaf(u)) {
      const size_t start = value(unit(node));
      if (start > normalized_.size()) PD_THROW(kCorruptData, name_, ": precompiled_charsmap value out of range");
      const size_t end = normalized_.find('\0', start);
      *replacement = std::string_view(normalized_).substr(start, end == std::string::npos ? end : end - start);
      return true;
    }
  }
  return false;
}

std::u32string PrecompiledCharsmap::normalize(std::u32string_view text) const {
  std::u32string out;
  out.reserve(text.size());
  std::string bytes;
  std::string_view rep;
  size_t begin = 0;
  for (size_t end : unicode::grapheme_cluster_ends(text)) {
    const std::u32string_view cluster = text.substr(begin, end - begin);
    begin = end;
    bytes = utf8_encode(cluster);
    // Replacement strings were validated as UTF-8 at load time.
    if (bytes.size() < 6 && shortest_prefix_replacement(bytes, &rep)) {
      out += utf8_decode(rep, name_);
      continue;
    }
    for (char32_t c : cluster) {
      bytes.clear();
      utf8_append(bytes, c);
      if (shortest_prefix_replacement(bytes, &rep)) {
        out += utf8_decode(rep, name_);
      } else {
        out.push_back(c);
      }
    }
  }
  return out;
}

}  // namespace paradit::text
