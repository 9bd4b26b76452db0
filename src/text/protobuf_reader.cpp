#include "text/protobuf_reader.h"

#include <cstring>

#include "paradit/core/status.h"

namespace paradit::text {

void ProtoReader::fail(std::string_view problem) const {
  PD_THROW(kCorruptData, what_, ": ", problem, " at byte ", pos_, " (not a valid protobuf message)");
}

bool ProtoReader::next(uint32_t* field, WireType* wire_type) {
  if (pos_ >= data_.size()) return false;
  const uint64_t tag = varint();
  *field = static_cast<uint32_t>(tag >> 3);
  const uint32_t type = tag & 7;
  if (*field == 0) fail("field number 0");
  if (type != kVarint && type != kFixed64 && type != kLengthDelimited && type != kFixed32) {
    fail("unsupported wire type " + std::to_string(type));
  }
  *wire_type = static_cast<WireType>(type);
  return true;
}

uint64_t ProtoReader::varint() {
  uint64_t value = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (pos_ >= data_.size()) fail("truncated varint");
    const auto b = static_cast<unsigned char>(data_[pos_++]);
    value |= static_cast<uint64_t>(b & 0x7F) << shift;
    if ((b & 0x80) == 0) return value;
  }
  fail("varint longer than 10 bytes");
}

uint32_t ProtoReader::fixed32() {
  if (data_.size() - pos_ < 4) fail("truncated fixed32");
  uint32_t v = 0;
  for (int k = 3; k >= 0; --k) v = (v << 8) | static_cast<unsigned char>(data_[pos_ + k]);  // little endian
  pos_ += 4;
  return v;
}

float ProtoReader::float32() {
  const uint32_t bits = fixed32();
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

std::string_view ProtoReader::bytes() {
  const uint64_t n = varint();
  if (n > data_.size() - pos_) fail("length-delimited field runs past the end");
  const std::string_view out = data_.substr(pos_, n);
  pos_ += n;
  return out;
}

void ProtoReader::skip(WireType wire_type) {
  switch (wire_type) {
    case kVarint: varint(); break;
    case kFixed64:
      if (data_.size() - pos_ < 8) fail("truncated fixed64");
      pos_ += 8;
      break;
    case kLengthDelimited: bytes(); break;
    case kFixed32: fixed32(); break;
  }
}

}  // namespace paradit::text
