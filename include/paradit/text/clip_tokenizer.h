// CLIP's byte-level BPE tokenizer (vocab.json + merges.txt), as FLUX.1's `tokenizer` folder holds it.
//
// Matches transformers token for token. Two sets of text rules exist there, and both are implemented:
//   kSlowTransformers  transformers 4's CLIPTokenizer (the Python class the FLUX pipeline loads there), without
//                      ftfy (neither transformers nor diffusers installs it): BasicTokenizer cleaning (control
//                      characters and U+FFFD dropped, spaces around CJK ideographs, NFC, Python's lower() per
//                      word), then CLIP's regex.
//   kTokenizersLibrary the tokenizers-library pipeline: CLIPTokenizerFast in transformers 4 and CLIPTokenizer
//                      in transformers 5 (NFC, \s+ -> " ", per-character lower case, CLIP's regex, GPT-2 byte
//                      level split).
// They differ only on unusual text (CJK ideographs, control and format characters, final sigma, U+0085,
// upper-case spellings of the special tokens); plain prompts give the same ids. The default is kTokenizersLibrary,
// what diffusers' FluxPipeline runs with a current transformers (5.x, which has no slow class left) and with
// the fast class of transformers 4.
// A loaded tokenizer is immutable (no cache): encode() may be called from several threads at once.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "paradit/text/tokenized_prompt.h"

namespace paradit {

enum class ClipTextRules { kSlowTransformers, kTokenizersLibrary };

class ClipTokenizer {
 public:
  static constexpr int kFluxMaxLength = 77;

  // A folder with vocab.json and merges.txt; tokenizer_config.json and special_tokens_map.json are read when
  // present (the pad token; which special tokens match after normalization). Throws Error naming the file:
  // kNotFound when one is missing, kCorruptData when it is malformed.
  static ClipTokenizer load(const std::string& dir, ClipTextRules rules = ClipTextRules::kTokenizersLibrary);
  // The two files alone, with openai/clip-vit-large-patch14's special tokens (pad = <|endoftext|>).
  static ClipTokenizer from_files(const std::string& vocab_json, const std::string& merges_txt,
                                  ClipTextRules rules = ClipTextRules::kTokenizersLibrary);

  // What the FLUX pipeline passes to CLIPTextModel: tokenizer(prompt, padding="max_length",
  // max_length=77, truncation=True).input_ids. The prompt is UTF-8 (kInvalidArgument otherwise).
  TokenizedPrompt encode(std::string_view prompt, int max_length = kFluxMaxLength) const;
  // <|startoftext|>, the prompt's tokens, <|endoftext|>: no truncation, no padding.
  std::vector<int32_t> encode_unpadded(std::string_view prompt) const;

  int32_t bos_id() const;
  int32_t eos_id() const;
  int32_t pad_id() const;
  size_t vocab_size() const;
  ClipTextRules rules() const;

 private:
  struct Impl;
  std::shared_ptr<const Impl> impl_;
};

}  // namespace paradit
