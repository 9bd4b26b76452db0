// T5's SentencePiece unigram tokenizer, as FLUX.1's `tokenizer_2` folder holds it (spiece.model and
// tokenizer.json), matching transformers' T5TokenizerFast token for token.
//
// Both files give the same pipeline, the one T5TokenizerFast runs: the precompiled nmt_nfkc normalizer
// applied per grapheme cluster as the tokenizers library does, white-space split, Metaspace ("▁" prefix),
// unigram Viterbi, special tokens (<pad>, </s>, <unk>, <extra_id_N>) matched in the raw text, "</s>" appended.
// tokenizer.json is read as the tokenizers library reads it (its own normalizer / pre-tokenizer settings).
// A loaded tokenizer is immutable (no cache): encode() may be called from several threads at once.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "paradit/text/tokenized_prompt.h"

namespace paradit {

class T5Tokenizer {
 public:
  static constexpr int kFluxDevMaxLength = 512;      // FLUX.1-dev max_sequence_length
  static constexpr int kFluxSchnellMaxLength = 256;  // FLUX.1-schnell max_sequence_length

  // A folder like tokenizer_2/: tokenizer.json when present (as transformers prefers it), else spiece.model.
  // Throws Error naming the file: kNotFound, kCorruptData, or kUnimplemented for settings T5 never uses.
  static T5Tokenizer load(const std::string& dir);
  // spiece.model, converted the way transformers converts it: its pieces, then `extra_ids` sentinels
  // <extra_id_0> (last id) .. <extra_id_{n-1}> (first after the pieces).
  static T5Tokenizer from_sentencepiece(const std::string& spiece_model, int extra_ids = 100);
  static T5Tokenizer from_tokenizer_json(const std::string& tokenizer_json);

  // What the FLUX pipeline passes to T5EncoderModel: tokenizer_2(prompt, padding="max_length",
  // max_length=max_sequence_length, truncation=True, add_special_tokens=True).input_ids.
  TokenizedPrompt encode(std::string_view prompt, int max_length) const;
  // The prompt's tokens and </s>: no truncation, no padding.
  std::vector<int32_t> encode_unpadded(std::string_view prompt) const;

  int32_t eos_id() const;
  int32_t pad_id() const;
  int32_t unk_id() const;
  size_t vocab_size() const;

 private:
  struct Impl;
  std::shared_ptr<const Impl> impl_;
};

}  // namespace paradit
