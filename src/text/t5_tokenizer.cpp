#include "paradit/text/t5_tokenizer.h"

#include "paradit/core/status.h"
#include "text/t5_loaders.h"
#include "text/text_file.h"
#include "text/pad_truncate.h"
#include "text/utf8.h"

namespace paradit {

struct T5Tokenizer::Impl {
  text::T5Pipeline pipeline;
};

T5Tokenizer T5Tokenizer::load(const std::string& dir) {
  const std::string json_path = text::join_path(dir, "tokenizer.json");
  if (text::file_exists(json_path)) return from_tokenizer_json(json_path);
  const std::string spm_path = text::join_path(dir, "spiece.model");
  if (text::file_exists(spm_path)) return from_sentencepiece(spm_path);
  PD_THROW(kNotFound, "no T5 tokenizer in ", dir, ": neither tokenizer.json nor spiece.model");
}

T5Tokenizer T5Tokenizer::from_sentencepiece(const std::string& spiece_model, int extra_ids) {
  auto impl = std::make_shared<Impl>();
  impl->pipeline = text::t5_pipeline_from_sentencepiece(spiece_model, extra_ids);
  T5Tokenizer t;
  t.impl_ = std::move(impl);
  return t;
}

T5Tokenizer T5Tokenizer::from_tokenizer_json(const std::string& tokenizer_json) {
  auto impl = std::make_shared<Impl>();
  impl->pipeline = text::t5_pipeline_from_tokenizer_json(tokenizer_json);
  T5Tokenizer t;
  t.impl_ = std::move(impl);
  return t;
}

TokenizedPrompt T5Tokenizer::encode(std::string_view prompt, int max_length) const {
  const text::T5Pipeline& p = impl_->pipeline;
  return text::pad_and_truncate(p.prefix_ids, p.content_ids(text::utf8_decode(prompt, "prompt")), p.suffix_ids,
                                max_length, p.pad_id);
}

std::vector<int32_t> T5Tokenizer::encode_unpadded(std::string_view prompt) const {
  const text::T5Pipeline& p = impl_->pipeline;
  std::vector<int32_t> ids = p.prefix_ids;
  const std::vector<int32_t> content = p.content_ids(text::utf8_decode(prompt, "prompt"));
  ids.insert(ids.end(), content.begin(), content.end());
  ids.insert(ids.end(), p.suffix_ids.begin(), p.suffix_ids.end());
  return ids;
}

int32_t T5Tokenizer::eos_id() const { return impl_->pipeline.eos_id; }
int32_t T5Tokenizer::pad_id() const { return impl_->pipeline.pad_id; }
int32_t T5Tokenizer::unk_id() const { return impl_->pipeline.model->unk_id(); }
size_t T5Tokenizer::vocab_size() const { return impl_->pipeline.model->size(); }

}  // namespace paradit
