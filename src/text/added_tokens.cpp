#include "text/added_tokens.h"

namespace paradit::text {

std::vector<TextSegment> split_on_tokens(std::u32string_view text, const std::vector<LiteralToken>& tokens) {
  std::vector<TextSegment> out;
  size_t start = 0;  // beginning of the pending plain text
  size_t i = 0;
  while (i < text.size()) {
    const LiteralToken* best = nullptr;
    for (const LiteralToken& t : tokens) {
      if (t.text.empty() || text.substr(i, t.text.size()) != t.text) continue;
      if (best == nullptr || t.text.size() > best->text.size()) best = &t;
    }
    if (best == nullptr) {
      ++i;
      continue;
    }
    if (i > start) out.push_back({std::u32string(text.substr(start, i - start)), -1});
    out.push_back({std::u32string(), best->id});
    i += best->text.size();
    start = i;
  }
  if (text.size() > start) out.push_back({std::u32string(text.substr(start)), -1});
  return out;
}

}  // namespace paradit::text
