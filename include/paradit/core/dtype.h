// Element types and host-side conversions (bf16/f16/fp8-e4m3 <-> f32).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace paradit {

enum class DType : uint8_t { kF32, kBF16, kF16, kF8E4M3 };

size_t dtype_size(DType dt);
const char* dtype_name(DType dt);

// bf16 is the top half of an f32; conversion rounds to nearest even, NaN stays NaN.
inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}
inline float bf16_to_f32(uint16_t h) {
  uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);
float f8e4m3_to_f32(uint8_t v);

// Converts n elements between any two dtypes on the host (fp8 only as a source).
void convert_host(void* dst, DType dst_type, const void* src, DType src_type, size_t n);

}  // namespace paradit
