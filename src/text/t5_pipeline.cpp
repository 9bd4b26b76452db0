#include "text/t5_pipeline.h"

#include "text/unicode.h"
#include "text/utf8.h"

namespace paradit::text {
namespace {

std::u32string apply_replace(const NormalizerStep& s, const std::u32string& text) {
  std::u32string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    size_t n = 0;  // length of a match at i (leftmost, greedy, non-overlapping)
    if (s.any_white_space) {
      while (i + n < text.size() && unicode::is_white_space(text[i + n])) ++n;
    } else if (s.min_repeat > 0) {
      while (i + n < text.size() && text[i + n] == s.pattern[0]) ++n;
      if (n < static_cast<size_t>(s.min_repeat)) n = 0;
    } else if (!s.pattern.empty() && text.compare(i, s.pattern.size(), s.pattern) == 0) {
      n = s.pattern.size();
    }
    if (n == 0) {
      out.push_back(text[i++]);
    } else {
      out += s.content;
      i += n;
    }
  }
  return out;
}

std::u32string normalize(const std::vector<NormalizerStep>& steps, std::u32string text) {
  for (const NormalizerStep& s : steps) {
    switch (s.kind) {
      case NormalizerStep::Kind::kPrecompiled:
        text = s.charsmap->normalize(text);
        break;
      case NormalizerStep::Kind::kStrip: {
        size_t b = 0, e = text.size();
        if (s.strip_left) while (b < e && unicode::is_white_space(text[b])) ++b;
        if (s.strip_right) while (e > b && unicode::is_white_space(text[e - 1])) --e;
        text = text.substr(b, e - b);
        break;
      }
      case NormalizerStep::Kind::kReplace:
        text = apply_replace(s, text);
        break;
    }
  }
  return text;
}

// Metaspace: spaces become the replacement, which is prepended unless already there, then (split) the text is
// cut before every replacement character (SplitDelimiterBehavior::MergedWithNext).
void metaspace(const PreTokenizerStep& s, const std::u32string& word, std::vector<std::u32string>& out) {
  std::u32string w = word;
  for (char32_t& c : w) {
    if (c == U' ') c = s.replacement;
  }
  if (s.prepend && (w.empty() || w[0] != s.replacement)) w.insert(w.begin(), s.replacement);
  if (!s.split) {
    out.push_back(std::move(w));
    return;
  }
  size_t start = 0;
  for (size_t i = 1; i <= w.size(); ++i) {
    if (i == w.size() || w[i] == s.replacement) {
      out.push_back(w.substr(start, i - start));
      start = i;
    }
  }
}

std::vector<std::u32string> pre_tokenize(const std::vector<PreTokenizerStep>& steps, const std::u32string& text) {
  std::vector<std::u32string> words{text};
  for (const PreTokenizerStep& s : steps) {
    std::vector<std::u32string> next;
    for (const std::u32string& w : words) {
      if (s.kind == PreTokenizerStep::Kind::kMetaspace) {
        metaspace(s, w, next);
        continue;
      }
      for (size_t i = 0; i < w.size();) {  // kWhitespaceSplit: maximal runs without White_Space
        if (unicode::is_white_space(w[i])) {
          ++i;
          continue;
        }
        size_t j = i;
        while (j < w.size() && !unicode::is_white_space(w[j])) ++j;
        next.push_back(w.substr(i, j - i));
        i = j;
      }
    }
    words = std::move(next);
  }
  return words;
}

}  // namespace

std::vector<int32_t> T5Pipeline::content_ids(const std::u32string& prompt) const {
  std::vector<int32_t> ids;
  for (const TextSegment& seg : split_on_tokens(prompt, raw_tokens)) {
    if (seg.is_token()) {
      ids.push_back(seg.token_id);
      continue;
    }
    // Each stretch between special tokens is normalized and pre-tokenized on its own.
    for (const TextSegment& part : split_on_tokens(normalize(normalizers, seg.text), norm_tokens)) {
      if (part.is_token()) {
        ids.push_back(part.token_id);
        continue;
      }
      for (const std::u32string& word : pre_tokenize(pre_tokenizers, part.text)) {
        model->encode(utf8_encode(word), ids);
      }
    }
  }
  return ids;
}

}  // namespace paradit::text
