// Moving raw elements in the widest aligned units: gathers and replications (embedding, upsample, im2col) do
// no arithmetic, so they copy bytes, whatever the dtype, in units of 16, 8, 4, 2 or 1 bytes — the largest
// that divides every row length, pointer and stride involved.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <initializer_list>

#include "paradit/core/status.h"

namespace paradit::cuda {

template <int kBytes>
struct UnitOf;
template <>
struct UnitOf<16> {
  using type = uint4;
};
template <>
struct UnitOf<8> {
  using type = uint2;
};
template <>
struct UnitOf<4> {
  using type = uint32_t;
};
template <>
struct UnitOf<2> {
  using type = uint16_t;
};
template <>
struct UnitOf<1> {
  using type = uint8_t;
};

// The largest unit (≤ 16 bytes) dividing every value: byte counts, byte strides and addresses.
inline int unit_bytes(std::initializer_list<uint64_t> values) {
  uint64_t v = 16;
  for (uint64_t x : values) v |= x;
  return int(v & (~v + 1));  // lowest set bit: 1, 2, 4, 8 or 16
}

inline uint64_t addr(const void* p) { return uint64_t(reinterpret_cast<uintptr_t>(p)); }

// fn(UnitTag<U>{}) with the unit type of `bytes` (a value unit_bytes returned).
template <typename U>
struct UnitTag {
  using type = U;
};
template <typename Fn>
void dispatch_unit(int bytes, Fn&& fn) {
  switch (bytes) {
    case 16: fn(UnitTag<uint4>{}); return;
    case 8: fn(UnitTag<uint2>{}); return;
    case 4: fn(UnitTag<uint32_t>{}); return;
    case 2: fn(UnitTag<uint16_t>{}); return;
    case 1: fn(UnitTag<uint8_t>{}); return;
  }
  PD_THROW(kInternal, "dispatch_unit: bad unit size ", bytes);
}

}  // namespace paradit::cuda
