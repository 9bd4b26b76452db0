// CLIP's byte-level BPE model: vocab.json (token -> id) and merges.txt (ranked symbol pairs), the format of
// openai/clip-vit-large-patch14. Tokens are strings of "byte symbols" (GPT-2's bytes_to_unicode map) and the
// last symbol of a word carries the "</w>" suffix.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace paradit::text {

class ClipBpe {
 public:
  // `max_merges` < 0: all. Throws kCorruptData naming the file and line for malformed content.
  static ClipBpe parse(const std::string& vocab_json_text, const std::string& vocab_name,
                       const std::string& merges_text, const std::string& merges_name, int max_merges);

  // Appends the ids of one pre-tokenized piece (its UTF-8 bytes); symbols missing from the vocabulary become
  // unk_id, as in transformers.
  void encode_piece(std::string_view utf8_piece, int32_t unk_id, std::vector<int32_t>& ids) const;
  // -1 when absent.
  int32_t id_of(const std::string& token) const;
  size_t size() const { return vocab_.size(); }

 private:
  std::unordered_map<std::string, int32_t> vocab_;
  std::unordered_map<std::string, int> ranks_;  // "first second" (a merges.txt line) -> rank
  std::array<std::string, 256> byte_symbols_;  // UTF-8 of bytes_to_unicode()[b]
};

}  // namespace paradit::text
