// Argument checks shared by the transports that move host tensors (in-process, MPI).
#pragma once

#include <span>

#include "paradit/core/status.h"
#include "paradit/core/tensor.h"

namespace paradit::detail {

inline void require_host(const Tensor& t, const char* op, const char* transport) {
  PD_REQUIRE(t.defined(), op, ": undefined tensor");
  PD_REQUIRE(t.device().is_cpu(), op, ": the ", transport, " transport moves host tensors, got ", t.desc());
}

inline void require_list(std::span<const Tensor> list, int size, const char* op, const char* what,
                         const char* transport) {
  PD_REQUIRE(int(list.size()) == size, op, ": ", list.size(), " ", what, " pieces for ", size, " ranks");
  for (const Tensor& t : list) require_host(t, op, transport);
}

inline void require_summable(const Tensor& t, const char* op) {
  PD_REQUIRE(t.dtype() == DType::kF32 || t.dtype() == DType::kBF16 || t.dtype() == DType::kF16, op,
             ": sums f32, bf16 or f16 tensors, got ", t.desc());
}

}  // namespace paradit::detail
