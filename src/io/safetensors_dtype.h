// The dtype names of the safetensors format and how they map to paradit's DType.
#pragma once

#include <cstddef>
#include <optional>
#include <string>

#include "paradit/core/dtype.h"

namespace paradit::io {

// Bytes per element of a dtype the format defines (F64, I64, BOOL, ... included, so that a file holding them
// can still be validated and its other tensors read); nullopt for a name the format does not define.
std::optional<size_t> safetensors_dtype_size(const std::string& name);
// The paradit dtype for a format name, nullopt when paradit has no such dtype.
std::optional<DType> safetensors_dtype(const std::string& name);
// The format name of a paradit dtype ("F32", "BF16", "F16", "F8_E4M3").
const char* safetensors_dtype_name(DType dtype);

}  // namespace paradit::io
