// spiece.model -> T5Pipeline, the conversion transformers applies (T5Tokenizer.__init__ in transformers 5,
// T5Converter in transformers 4 with the WhitespaceSplit pre-tokenizer of the published T5 tokenizer.json).
// SentencePiece's own encoder differs from it on a few inputs (see tests/fixtures/tokenizers/README.md).
#include "paradit/core/status.h"
#include "text/sentencepiece_model.h"
#include "text/t5_loaders.h"
#include "text/text_file.h"
#include "text/utf8.h"

namespace paradit::text {

T5Pipeline t5_pipeline_from_sentencepiece(const std::string& path, int extra_ids) {
  PD_REQUIRE(extra_ids >= 0, "extra_ids must be >= 0, got ", extra_ids);
  const SentencePieceModel m = parse_sentencepiece_model(read_whole_file(path), path);
  if (m.model_type != 1) {
    PD_THROW(kUnimplemented, path, ": SentencePiece model type ", m.model_type, " is not unigram (1)");
  }
  if (m.byte_fallback) PD_THROW(kUnimplemented, path, ": byte_fallback models are not supported (T5 has none)");
  if (m.treat_whitespace_as_suffix) PD_THROW(kUnimplemented, path, ": treat_whitespace_as_suffix is not supported");

  std::vector<std::pair<std::string, double>> vocab;
  vocab.reserve(m.pieces.size() + extra_ids);
  for (const auto& piece : m.pieces) {
    if (piece.text.empty()) PD_THROW(kCorruptData, path, ": piece ", vocab.size(), " is empty");
    vocab.emplace_back(piece.text, static_cast<double>(piece.score));
  }
  for (int i = extra_ids - 1; i >= 0; --i) vocab.emplace_back("<extra_id_" + std::to_string(i) + ">", 0.0);

  T5Pipeline p;
  if (!m.precompiled_charsmap.empty()) {
    NormalizerStep s{NormalizerStep::Kind::kPrecompiled};
    s.charsmap = std::make_shared<PrecompiledCharsmap>(m.precompiled_charsmap, path + ": normalizer_spec");
    p.normalizers.push_back(std::move(s));
  }
  p.model.emplace(std::move(vocab), m.unk_id, path);
  auto id_of = [&](const char* token) {
    const int32_t id = p.model->id_of(token);
    if (id < 0) PD_THROW(kCorruptData, path, ": no \"", token, "\" piece (not a T5 vocabulary)");
    return id;
  };
  p.pad_id = id_of("<pad>");
  p.eos_id = id_of("</s>");
  for (const char* token : {"<pad>", "</s>", "<unk>"}) {
    p.raw_tokens.push_back({utf8_decode(token, path), id_of(token)});
  }
  for (int i = 0; i < extra_ids; ++i) {
    const std::string token = "<extra_id_" + std::to_string(i) + ">";
    p.raw_tokens.push_back({utf8_decode(token, path), p.model->id_of(token)});
  }
  p.pre_tokenizers.push_back({PreTokenizerStep::Kind::kWhitespaceSplit});
  p.pre_tokenizers.push_back({PreTokenizerStep::Kind::kMetaspace});
  p.suffix_ids = {p.eos_id};
  return p;
}

}  // namespace paradit::text
