// ClipTokenizer: files and special tokens, then per flavour: split on special tokens, normalize, pre-tokenize,
// BPE, BOS/EOS, truncate and pad.
#include "paradit/text/clip_tokenizer.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "paradit/core/status.h"
#include "text/added_tokens.h"
#include "text/clip_bpe.h"
#include "text/clip_pretokenize.h"
#include "text/text_file.h"
#include "text/pad_truncate.h"
#include "text/utf8.h"

namespace paradit {
namespace {

// transformers 4's CLIPTokenizer reads at most this many merges (49152 - 256 - 2: CLIP's BPE vocabulary size
// minus the byte symbols and the two special tokens); the tokenizers library reads them all. Real CLIP files
// have exactly this many.
constexpr int kSlowMaxMerges = 49152 - 256 - 2;

// openai/clip-vit-large-patch14's special tokens, which FLUX.1 ships.
struct SpecialTokens {
  std::string bos = "<|startoftext|>", eos = "<|endoftext|>", unk = "<|endoftext|>", pad = "<|endoftext|>";
  // For the tokenizers-library flavour: which ones are matched in the normalized text rather than the raw
  // text (added_tokens_decoder[...]["normalized"]). FLUX.1's tokenizer_config.json: <|startoftext|> only.
  std::vector<std::pair<std::string, bool>> normalized = {{"<|startoftext|>", true}, {"<|endoftext|>", false}};
};

std::string token_content(const nlohmann::json& v, const std::string& file, const char* key) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  PD_THROW(kCorruptData, file, ": \"", key, "\" must be a string or an object with \"content\"");
}

nlohmann::json read_json(const std::string& path) {
  const std::string text = text::read_whole_file(path);
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    PD_THROW(kCorruptData, path, " is not valid JSON: ", e.what());
  }
}

void read_special_tokens(const nlohmann::json& j, const std::string& file, SpecialTokens* s) {
  if (!j.is_object()) PD_THROW(kCorruptData, file, " must be a JSON object");
  const std::pair<const char*, std::string*> keys[] = {
      {"bos_token", &s->bos}, {"eos_token", &s->eos}, {"unk_token", &s->unk}, {"pad_token", &s->pad}};
  for (const auto& [key, dst] : keys) {
    if (j.contains(key) && !j[key].is_null()) *dst = token_content(j[key], file, key);
  }
  if (j.contains("added_tokens_decoder") && j["added_tokens_decoder"].is_object()) {
    for (const auto& [id, tok] : j["added_tokens_decoder"].items()) {
      const std::string content = token_content(tok, file, "added_tokens_decoder");
      const bool normalized = tok.is_object() && tok.value("normalized", false);
      bool found = false;
      for (auto& [c, n] : s->normalized) {
        if (c == content) n = normalized, found = true;
      }
      if (!found) s->normalized.emplace_back(content, normalized);
    }
  }
}

}  // namespace

struct ClipTokenizer::Impl {
  ClipTextRules rules = ClipTextRules::kTokenizersLibrary;
  text::ClipBpe bpe;
  int32_t bos = -1, eos = -1, unk = -1, pad = -1;
  int32_t startoftext = -1, endoftext = -1;      // the slow class's hard-coded BPE cache entries
  std::vector<text::LiteralToken> raw_tokens;    // matched in the raw prompt
  std::vector<text::LiteralToken> norm_tokens;   // tokenizers flavour: matched after normalization

  static std::shared_ptr<const Impl> make(const std::string& vocab_path, const std::string& merges_path,
                                          const SpecialTokens& special, ClipTextRules rules);
  std::vector<int32_t> content_ids(std::string_view prompt) const;
};

std::shared_ptr<const ClipTokenizer::Impl> ClipTokenizer::Impl::make(const std::string& vocab_path,
                                                                     const std::string& merges_path,
                                                                     const SpecialTokens& special,
                                                                     ClipTextRules rules) {
  auto impl = std::make_shared<Impl>();
  impl->rules = rules;
  const std::string vocab_text = text::read_whole_file(vocab_path);
  const std::string merges_text = text::read_whole_file(merges_path);
  impl->bpe = text::ClipBpe::parse(vocab_text, vocab_path, merges_text, merges_path,
                                   rules == ClipTextRules::kSlowTransformers ? kSlowMaxMerges : -1);
  auto id_of = [&](const std::string& token, const char* role) {
    const int32_t id = impl->bpe.id_of(token);
    if (id < 0) PD_THROW(kCorruptData, vocab_path, ": the ", role, " token \"", token, "\" is not in the vocabulary");
    return id;
  };
  impl->bos = id_of(special.bos, "BOS");
  impl->eos = id_of(special.eos, "EOS");
  impl->unk = id_of(special.unk, "unknown");
  impl->pad = id_of(special.pad, "padding");
  impl->startoftext = impl->bpe.id_of("<|startoftext|>");
  impl->endoftext = impl->bpe.id_of("<|endoftext|>");
  std::vector<std::string> specials;
  for (const std::string* s : {&special.bos, &special.eos, &special.unk, &special.pad}) {
    if (std::find(specials.begin(), specials.end(), *s) == specials.end()) specials.push_back(*s);
  }
  for (const std::string& s : specials) {
    bool normalized = false;
    for (const auto& [content, n] : special.normalized) {
      if (content == s) normalized = n;
    }
    text::LiteralToken token{text::utf8_decode(s, "special token"), impl->bpe.id_of(s)};
    // The slow class matches every special token in the raw text; the tokenizers library honours the flag.
    if (rules == ClipTextRules::kTokenizersLibrary && normalized) {
      impl->norm_tokens.push_back(std::move(token));
    } else {
      impl->raw_tokens.push_back(std::move(token));
    }
  }
  return impl;
}

std::vector<int32_t> ClipTokenizer::Impl::content_ids(std::string_view prompt) const {
  const std::u32string text = text::utf8_decode(prompt, "prompt");
  std::vector<int32_t> ids;
  auto encode_pieces = [&](const std::vector<std::u32string>& pieces) {
    for (const std::u32string& piece : pieces) {
      // The slow class caches the two special spellings as themselves, so a lower-cased "<|ENDOFTEXT|>"
      // that the regex keeps whole still becomes the special token.
      if (rules == ClipTextRules::kSlowTransformers && piece == U"<|startoftext|>" && startoftext >= 0) {
        ids.push_back(startoftext);
      } else if (rules == ClipTextRules::kSlowTransformers && piece == U"<|endoftext|>" && endoftext >= 0) {
        ids.push_back(endoftext);
      } else {
        bpe.encode_piece(text::utf8_encode(piece), unk, ids);
      }
    }
  };
  for (const text::TextSegment& seg : text::split_on_tokens(text, raw_tokens)) {
    if (seg.is_token()) {
      ids.push_back(seg.token_id);
    } else if (rules == ClipTextRules::kSlowTransformers) {
      encode_pieces(text::clip_pieces_slow(seg.text));
    } else {
      for (const text::TextSegment& part : text::split_on_tokens(text::clip_normalize_fast(seg.text), norm_tokens)) {
        if (part.is_token()) {
          ids.push_back(part.token_id);
        } else {
          encode_pieces(text::clip_pieces_fast(part.text));
        }
      }
    }
  }
  return ids;
}

ClipTokenizer ClipTokenizer::load(const std::string& dir, ClipTextRules rules) {
  SpecialTokens special;
  for (const char* name : {"tokenizer_config.json", "special_tokens_map.json"}) {  // the latter wins
    const std::string path = text::join_path(dir, name);
    if (text::file_exists(path)) read_special_tokens(read_json(path), path, &special);
  }
  ClipTokenizer t;
  t.impl_ = Impl::make(text::join_path(dir, "vocab.json"), text::join_path(dir, "merges.txt"), special, rules);
  return t;
}

ClipTokenizer ClipTokenizer::from_files(const std::string& vocab_json, const std::string& merges_txt,
                                        ClipTextRules rules) {
  ClipTokenizer t;
  t.impl_ = Impl::make(vocab_json, merges_txt, SpecialTokens(), rules);
  return t;
}

TokenizedPrompt ClipTokenizer::encode(std::string_view prompt, int max_length) const {
  return text::pad_and_truncate({impl_->bos}, impl_->content_ids(prompt), {impl_->eos}, max_length, impl_->pad);
}

std::vector<int32_t> ClipTokenizer::encode_unpadded(std::string_view prompt) const {
  std::vector<int32_t> ids{impl_->bos};
  const std::vector<int32_t> content = impl_->content_ids(prompt);
  ids.insert(ids.end(), content.begin(), content.end());
  ids.push_back(impl_->eos);
  return ids;
}

int32_t ClipTokenizer::bos_id() const { return impl_->bos; }
int32_t ClipTokenizer::eos_id() const { return impl_->eos; }
int32_t ClipTokenizer::pad_id() const { return impl_->pad; }
size_t ClipTokenizer::vocab_size() const { return impl_->bpe.size(); }
ClipTextRules ClipTokenizer::rules() const { return impl_->rules; }

}  // namespace paradit
