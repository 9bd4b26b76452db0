// Splitting text on literal special tokens ("<|endoftext|>", "</s>", "<extra_id_0>", ...).
//
// Both reference tokenizers cut the prompt at every occurrence of a special token before anything else (the
// slow classes with a trie, the tokenizers library with Aho-Corasick, leftmost then longest match) and treat
// each piece between them on its own.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace paradit::text {

struct LiteralToken {
  std::u32string text;
  int32_t id;
};

struct TextSegment {
  std::u32string text;  // empty when this segment is a token
  int32_t token_id = -1;
  bool is_token() const { return token_id >= 0; }
};

// Leftmost match wins; at one position the longest. Empty text segments are dropped.
std::vector<TextSegment> split_on_tokens(std::u32string_view text, const std::vector<LiteralToken>& tokens);

}  // namespace paradit::text
