#include "text/sentencepiece_model.h"

#include "paradit/core/status.h"
#include "text/protobuf_reader.h"

namespace paradit::text {
namespace {

using WireType = ProtoReader::WireType;

// Field numbers from sentencepiece_model.proto.
namespace field {
constexpr uint32_t kPieces = 1, kTrainerSpec = 2, kNormalizerSpec = 3;
constexpr uint32_t kPieceText = 1, kPieceScore = 2, kPieceType = 3;
constexpr uint32_t kModelType = 3, kTreatWhitespaceAsSuffix = 24, kByteFallback = 35, kUnkId = 40;
constexpr uint32_t kNormName = 1, kCharsmap = 2, kAddDummyPrefix = 3, kRemoveExtraWhitespaces = 4,
                   kEscapeWhitespaces = 5;
}  // namespace field

void expect(ProtoReader& r, WireType got, WireType want, const char* name) {
  if (got != want) r.fail(std::string("field ") + name + " has the wrong wire type");
}

SentencePieceModel::Piece parse_piece(std::string_view data, const std::string& what) {
  ProtoReader r(data, what);
  SentencePieceModel::Piece piece;
  uint32_t f;
  WireType t;
  while (r.next(&f, &t)) {
    if (f == field::kPieceText) {
      expect(r, t, WireType::kLengthDelimited, "piece");
      piece.text = std::string(r.bytes());
    } else if (f == field::kPieceScore) {
      expect(r, t, WireType::kFixed32, "score");
      piece.score = r.float32();
    } else if (f == field::kPieceType) {
      expect(r, t, WireType::kVarint, "type");
      const uint64_t type = r.varint();
      if (type < 1 || type > 6) r.fail("piece type " + std::to_string(type) + " is not 1..6");
      piece.type = static_cast<SentencePieceModel::PieceType>(type);
    } else {
      r.skip(t);
    }
  }
  return piece;
}

}  // namespace

SentencePieceModel parse_sentencepiece_model(const std::string& data, const std::string& name) {
  SentencePieceModel m;
  ProtoReader r(data, name);
  uint32_t f;
  WireType t;
  while (r.next(&f, &t)) {
    if (f == field::kPieces) {
      expect(r, t, WireType::kLengthDelimited, "pieces");
      m.pieces.push_back(parse_piece(r.bytes(), name + ": piece " + std::to_string(m.pieces.size())));
    } else if (f == field::kTrainerSpec) {
      expect(r, t, WireType::kLengthDelimited, "trainer_spec");
      ProtoReader s(r.bytes(), name + ": trainer_spec");
      while (s.next(&f, &t)) {
        if (f == field::kModelType && t == WireType::kVarint) {
          m.model_type = static_cast<int>(s.varint());
        } else if (f == field::kByteFallback && t == WireType::kVarint) {
          m.byte_fallback = s.varint() != 0;
        } else if (f == field::kTreatWhitespaceAsSuffix && t == WireType::kVarint) {
          m.treat_whitespace_as_suffix = s.varint() != 0;
        } else if (f == field::kUnkId && t == WireType::kVarint) {
          m.unk_id = static_cast<int32_t>(static_cast<uint32_t>(s.varint()));  // int32 is sign-extended
        } else {
          s.skip(t);
        }
      }
    } else if (f == field::kNormalizerSpec) {
      expect(r, t, WireType::kLengthDelimited, "normalizer_spec");
      ProtoReader s(r.bytes(), name + ": normalizer_spec");
      while (s.next(&f, &t)) {
        if (f == field::kNormName && t == WireType::kLengthDelimited) {
          m.normalizer_name = std::string(s.bytes());
        } else if (f == field::kCharsmap && t == WireType::kLengthDelimited) {
          m.precompiled_charsmap = std::string(s.bytes());
        } else if (f == field::kAddDummyPrefix && t == WireType::kVarint) {
          m.add_dummy_prefix = s.varint() != 0;
        } else if (f == field::kRemoveExtraWhitespaces && t == WireType::kVarint) {
          m.remove_extra_whitespaces = s.varint() != 0;
        } else if (f == field::kEscapeWhitespaces && t == WireType::kVarint) {
          m.escape_whitespaces = s.varint() != 0;
        } else {
          s.skip(t);
        }
      }
    } else {
      r.skip(t);
    }
  }
  if (m.pieces.empty()) PD_THROW(kCorruptData, name, ": no pieces (not a SentencePiece model)");
  return m;
}

}  // namespace paradit::text
