#include "text/unigram.h"

#include <algorithm>
#include <limits>

#include "paradit/core/status.h"

namespace paradit::text {
namespace {

constexpr double kUnknownPenalty = 10.0;  // sentencepiece kUnkPenalty, tokenizers K_UNK_PENALTY

size_t utf8_length(unsigned char lead) {
  return lead < 0x80 ? 1 : (lead >> 5) == 0x6 ? 2 : (lead >> 4) == 0xE ? 3 : 4;
}

uint64_t edge(int32_t node, unsigned char byte) { return (static_cast<uint64_t>(node) << 8) | byte; }

}  // namespace

UnigramModel::UnigramModel(std::vector<std::pair<std::string, double>> vocab, int32_t unk_id,
                           const std::string& name)
    : vocab_(std::move(vocab)), unk_id_(unk_id) {
  if (vocab_.empty()) PD_THROW(kCorruptData, name, ": the unigram vocabulary is empty");
  if (unk_id_ < 0 || static_cast<size_t>(unk_id_) >= vocab_.size()) {
    PD_THROW(kCorruptData, name, ": unk_id ", unk_id_, " is outside the vocabulary of ", vocab_.size());
  }
  min_score_ = std::numeric_limits<double>::infinity();
  node_token_.push_back(-1);  // root
  for (size_t id = 0; id < vocab_.size(); ++id) {
    const auto& [piece, score] = vocab_[id];
    ids_[piece] = static_cast<int32_t>(id);  // a repeated piece keeps its last id, as in the tokenizers library
    min_score_ = std::min(min_score_, score);
    int32_t node = 0;
    for (char ch : piece) {
      const auto [it, added] = children_.emplace(edge(node, static_cast<unsigned char>(ch)),
                                                 static_cast<int32_t>(node_token_.size()));
      if (added) node_token_.push_back(-1);
      node = it->second;
    }
  }
  for (const auto& [piece, id] : ids_) {  // after the loop above, so a repeated piece maps to its last id
    int32_t node = 0;
    for (char ch : piece) node = child(node, static_cast<unsigned char>(ch));
    if (node > 0) node_token_[node] = id;
  }
}

int32_t UnigramModel::child(int32_t node, unsigned char byte) const {
  const auto it = children_.find(edge(node, byte));
  return it == children_.end() ? -1 : it->second;
}

int32_t UnigramModel::id_of(std::string_view token) const {
  const auto it = ids_.find(std::string(token));
  return it == ids_.end() ? -1 : it->second;
}

void UnigramModel::encode(std::string_view word, std::vector<int32_t>& ids) const {
  if (word.empty()) return;
  struct Best {
    int32_t id = -1;
    double score = 0;
    size_t start = 0;
    bool set = false;
  };
  const size_t n = word.size();
  const double unk_score = min_score_ - kUnknownPenalty;
  std::vector<Best> best(n + 1);
  auto offer = [&](size_t end, size_t start, int32_t id, double score) {
    Best& b = best[end];
    if (!b.set || score > b.score) b = Best{id, score, start, true};  // ties keep the first offer
  };
  for (size_t start = 0; start < n;) {
    const double here = best[start].score;
    const size_t char_len = std::min(utf8_length(static_cast<unsigned char>(word[start])), n - start);
    bool has_single_char = false;
    int32_t node = 0;
    for (size_t end = start; end < n;) {
      node = child(node, static_cast<unsigned char>(word[end]));
      ++end;
      if (node < 0) break;
      const int32_t id = node_token_[node];
      if (id < 0) continue;
      offer(end, start, id, vocab_[id].second + here);
      if (end - start == char_len) has_single_char = true;
    }
    if (!has_single_char) offer(start + char_len, start, unk_id_, unk_score + here);
    start += char_len;
  }
  // Backtrack; adjacent unknowns become one token.
  std::vector<std::pair<size_t, size_t>> spans;  // [start, end) in reverse order
  std::vector<bool> unknown;
  for (size_t end = n; end > 0;) {
    const Best& b = best[end];
    const bool unk = b.id == unk_id_;
    if (unk && !unknown.empty() && unknown.back()) {
      spans.back().first = b.start;
    } else {
      spans.emplace_back(b.start, end);
      unknown.push_back(unk);
    }
    end = b.start;
  }
  for (size_t k = spans.size(); k-- > 0;) {
    const int32_t id = id_of(word.substr(spans[k].first, spans[k].second - spans[k].first));
    ids.push_back(id >= 0 ? id : unk_id_);
  }
}

}  // namespace paradit::text
