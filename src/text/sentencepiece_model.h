// The parts of SentencePiece's ModelProto (sentencepiece_model.proto) a T5 tokenizer needs.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace paradit::text {

struct SentencePieceModel {
  enum class PieceType : int { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };
  struct Piece {
    std::string text;
    float score = 0;
    PieceType type = PieceType::kNormal;
  };
  std::vector<Piece> pieces;
  // trainer_spec (defaults as in the .proto)
  int model_type = 1;  // 1 unigram, 2 bpe, 3 word, 4 char
  bool byte_fallback = false;
  int unk_id = 0;
  bool treat_whitespace_as_suffix = false;
  // normalizer_spec
  std::string normalizer_name;
  std::string precompiled_charsmap;
  bool add_dummy_prefix = true;
  bool remove_extra_whitespaces = true;
  bool escape_whitespaces = true;
};

// Parses a serialized ModelProto; `name` (the file) appears in errors. Throws kCorruptData.
SentencePieceModel parse_sentencepiece_model(const std::string& data, const std::string& name);

}  // namespace paradit::text
