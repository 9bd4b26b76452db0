// The unigram language-model tokenizer (SentencePiece "unigram"), as the tokenizers library's Unigram model
// runs it: the highest-scoring segmentation by a Viterbi pass over every vocabulary piece found at each
// position (scores are log probabilities, summed in double), unknown characters scored min_score - 10, and
// runs of unknowns fused into one unknown token.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace paradit::text {

class UnigramModel {
 public:
  // Every entry is searchable, special pieces included (as in the tokenizers library). Throws kCorruptData
  // naming `name` for an empty vocabulary or an unk_id outside it.
  UnigramModel(std::vector<std::pair<std::string, double>> vocab, int32_t unk_id, const std::string& name);

  // Appends the ids of one pre-tokenized word (UTF-8).
  void encode(std::string_view word, std::vector<int32_t>& ids) const;
  int32_t id_of(std::string_view token) const;  // -1 when absent
  int32_t unk_id() const { return unk_id_; }
  size_t size() const { return vocab_.size(); }

 private:
  // Byte trie over the pieces: child of (node, byte) in one hash map; node_token_[node] is the piece ending
  // there (-1: none).
  int32_t child(int32_t node, unsigned char byte) const;

  std::vector<std::pair<std::string, double>> vocab_;
  std::unordered_map<std::string, int32_t> ids_;
  std::unordered_map<uint64_t, int32_t> children_;
  std::vector<int32_t> node_token_;
  double min_score_ = 0;
  int32_t unk_id_ = 0;
};

}  // namespace paradit::text
