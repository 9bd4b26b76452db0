// Calls a generic lambda with the device element type of a DType: fn(TypeTag<float>{}), fn(TypeTag<bf16>{}) …
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include "paradit/core/dtype.h"
#include "paradit/core/status.h"

namespace paradit::cuda {

template <typename T>
struct TypeTag {
  using type = T;
};

template <typename Fn>
void dispatch_dtype(const char* op, DType dt, Fn&& fn) {
  switch (dt) {
    case DType::kF32: fn(TypeTag<float>{}); return;
    case DType::kBF16: fn(TypeTag<__nv_bfloat16>{}); return;
    case DType::kF16: fn(TypeTag<__half>{}); return;
    case DType::kF8E4M3: fn(TypeTag<__nv_fp8_e4m3>{}); return;
  }
  PD_THROW(kInvalidArgument, op, ": unsupported dtype ", int(dt));
}

// Only the activation dtypes elementwise math runs in.
template <typename Fn>
void dispatch_float_dtype(const char* op, DType dt, Fn&& fn) {
  switch (dt) {
    case DType::kF32: fn(TypeTag<float>{}); return;
    case DType::kBF16: fn(TypeTag<__nv_bfloat16>{}); return;
    default: break;
  }
  PD_THROW(kInvalidArgument, op, ": dtype ", dtype_name(dt), " is not supported here (bf16 or f32)");
}

// The activation dtypes plus f16 (axpby's mixed-precision operands).
template <typename Fn>
void dispatch_real_dtype(const char* op, DType dt, Fn&& fn) {
  switch (dt) {
    case DType::kF32: fn(TypeTag<float>{}); return;
    case DType::kBF16: fn(TypeTag<__nv_bfloat16>{}); return;
    case DType::kF16: fn(TypeTag<__half>{}); return;
    default: break;
  }
  PD_THROW(kInvalidArgument, op, ": dtype ", dtype_name(dt), " is not supported here (f32, bf16 or f16)");
}

}  // namespace paradit::cuda
