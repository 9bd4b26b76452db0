#include "text/clip_bpe.h"

#include <climits>
#include <nlohmann/json.hpp>

#include "paradit/core/status.h"
#include "text/utf8.h"

namespace paradit::text {
namespace {

constexpr std::string_view kEndOfWord = "</w>";

// GPT-2's bytes_to_unicode(): printable Latin-1 bytes stand for themselves, the others (controls, space,
// 0x7F-0xA0, 0xAD) for U+0100 upwards in byte order, so every byte is a visible, non-space character.
std::array<std::string, 256> byte_symbols() {
  std::array<std::string, 256> out;
  int next = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    utf8_append(out[b], static_cast<char32_t>(printable ? b : next++));
  }
  return out;
}

std::vector<std::string_view> split_lines(std::string_view text) {
  std::vector<std::string_view> lines;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(start, end - start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    lines.push_back(line);
    start = end + 1;
  }
  while (!lines.empty() && lines.back().empty()) lines.pop_back();  // trailing newline(s)
  return lines;
}

}  // namespace

ClipBpe ClipBpe::parse(const std::string& vocab_json_text, const std::string& vocab_name,
                       const std::string& merges_text, const std::string& merges_name, int max_merges) {
  ClipBpe bpe;
  bpe.byte_symbols_ = byte_symbols();
  nlohmann::json vocab;
  try {
    vocab = nlohmann::json::parse(vocab_json_text);
  } catch (const nlohmann::json::exception& e) {
    PD_THROW(kCorruptData, vocab_name, " is not valid JSON: ", e.what());
  }
  if (!vocab.is_object() || vocab.empty()) {
    PD_THROW(kCorruptData, vocab_name, " must be a non-empty JSON object {token: id}");
  }
  for (const auto& [token, id] : vocab.items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX) {
      PD_THROW(kCorruptData, vocab_name, ": the id of token \"", token, "\" is not a non-negative integer");
    }
    bpe.vocab_[token] = id.get<int32_t>();
  }

  const std::vector<std::string_view> lines = split_lines(merges_text);
  size_t first = 0;
  if (!lines.empty() && lines[0].starts_with("#version")) first = 1;
  for (size_t n = first; n < lines.size(); ++n) {
    if (max_merges >= 0 && static_cast<int>(bpe.ranks_.size()) >= max_merges) break;
    const std::string_view line = lines[n];
    const size_t space = line.find(' ');
    if (space == std::string_view::npos || space == 0 || space + 1 == line.size() ||
        line.find(' ', space + 1) != std::string_view::npos) {
      PD_THROW(kCorruptData, merges_name, " line ", n + 1, ": expected two symbols separated by one space, got \"",
               line, "\"");
    }
    const std::string a(line.substr(0, space)), b(line.substr(space + 1));
    for (const std::string& token : {a, b, a + b}) {
      if (!bpe.vocab_.count(token)) {
        PD_THROW(kCorruptData, merges_name, " line ", n + 1, ": \"", token, "\" is not in ", vocab_name,
                 " (the files do not belong together, or one is truncated)");
      }
    }
    bpe.ranks_.emplace(std::string(line), static_cast<int>(bpe.ranks_.size()));
  }
  return bpe;
}

int32_t ClipBpe::id_of(const std::string& token) const {
  const auto it = vocab_.find(token);
  return it == vocab_.end() ? -1 : it->second;
}

void ClipBpe::encode_piece(std::string_view utf8_piece, int32_t unk_id, std::vector<int32_t>& ids) const {
  if (utf8_piece.empty()) return;
  std::vector<std::string> word;
  word.reserve(utf8_piece.size());
  for (char ch : utf8_piece) word.push_back(byte_symbols_[static_cast<unsigned char>(ch)]);
  word.back() += kEndOfWord;

  // transformers' CLIPTokenizer.bpe: repeatedly merge every occurrence (left to right) of the adjacent pair
  // with the lowest rank, until no adjacent pair is a merge.
  std::string key;
  while (word.size() > 1) {
    int best_rank = INT_MAX;
    size_t best = 0;
    for (size_t i = 0; i + 1 < word.size(); ++i) {
      key.assign(word[i]).append(" ").append(word[i + 1]);
      const auto it = ranks_.find(key);
      if (it != ranks_.end() && it->second < best_rank) best_rank = it->second, best = i;
    }
    if (best_rank == INT_MAX) break;
    const std::string first = word[best], second = word[best + 1];
    std::vector<std::string> merged;
    merged.reserve(word.size());
    for (size_t i = 0; i < word.size();) {
      if (i + 1 < word.size() && word[i] == first && word[i + 1] == second) {
        merged.push_back(first + second);
        i += 2;
      } else {
        merged.push_back(std::move(word[i]));
        i += 1;
      }
    }
    word = std::move(merged);
  }
  for (const std::string& token : word) {
    const int32_t id = id_of(token);
    ids.push_back(id >= 0 ? id : unk_id);
  }
}

}  // namespace paradit::text
