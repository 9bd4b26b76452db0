// A minimal reader of the protocol buffers wire format, enough for SentencePiece's ModelProto (spiece.model)
// without depending on protobuf: fields are walked one by one and unknown ones skipped.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace paradit::text {

class ProtoReader {
 public:
  enum WireType : uint32_t { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5 };

  // `what` names the data in errors ("spiece.model: trainer_spec").
  ProtoReader(std::string_view data, std::string what) : data_(data), what_(std::move(what)) {}

  // Reads the next field's tag; false at the end of the data.
  bool next(uint32_t* field, WireType* wire_type);
  uint64_t varint();
  uint32_t fixed32();
  float float32();
  std::string_view bytes();  // length-delimited payload (string, bytes, sub-message)
  void skip(WireType wire_type);

  // Throws kCorruptData naming the data, the offset and `problem`.
  [[noreturn]] void fail(std::string_view problem) const;

 private:
  std::string_view data_;
  size_t pos_ = 0;
  std::string what_;
};

}  // namespace paradit::text
