#include "backend/cpu/cpu_check.h"

#include <utility>

namespace paradit::cpu {

void require_host(const char* op, const char* name, const Tensor& t) {
  PD_REQUIRE(t.defined(), op, ": ", name, " is undefined");
  PD_REQUIRE(t.device().is_cpu(), op, ": ", name, " ", t.desc(), " is not a host tensor (cpu backend)");
}

void require_f32_rows(const char* op, const char* name, const Tensor& t) {
  require_host(op, name, t);
  PD_REQUIRE(t.dtype() == DType::kF32, op, ": ", name, " ", t.desc(), " must be f32 (the cpu compute dtype)");
  PD_REQUIRE(t.dim() >= 1, op, ": ", name, " ", t.desc(), " must have at least one dimension");
  PD_REQUIRE(t.size(-1) <= 1 || t.stride(-1) == 1, op, ": ", name, " ", t.desc(),
             " must have a contiguous last dimension (stride ", t.stride(-1), ")");
}

void require_shape(const char* op, const char* name, const Tensor& t, const Shape& want) {
  PD_REQUIRE(t.shape() == want, op, ": ", name, " is ", t.desc(), ", expected shape ", shape_str(want));
}

void require_f32_contiguous(const char* op, const char* name, const Tensor& t) {
  require_f32_rows(op, name, t);
  PD_REQUIRE(t.is_contiguous(), op, ": ", name, " ", t.desc(), " must be contiguous");
}

namespace {
// [first byte, one past the last byte] that t can touch.
std::pair<const char*, const char*> byte_span(const Tensor& t) {
  const char* lo = static_cast<const char*>(t.data());
  const char* hi = lo;
  for (int d = 0; d < t.dim(); ++d) {
    if (t.size(d) == 0) return {lo, lo};
    const int64_t reach = (t.size(d) - 1) * t.stride(d) * int64_t(t.element_size());
    if (reach < 0) lo += reach; else hi += reach;
  }
  return {lo, hi + t.element_size()};
}
}  // namespace

bool may_overlap(const Tensor& a, const Tensor& b) {
  if (!a.defined() || !b.defined() || a.numel() == 0 || b.numel() == 0) return false;
  const auto [alo, ahi] = byte_span(a);
  const auto [blo, bhi] = byte_span(b);
  return alo < bhi && blo < ahi;
}

Rows::Rows(const Tensor& t) : base_(t.data_as<float>()), width_(t.size(-1)) {
  count_ = 1;
  for (int d = 0; d + 1 < t.dim(); ++d) {
    sizes_.push_back(t.size(d));
    strides_.push_back(t.stride(d));
    count_ *= t.size(d);
  }
}

}  // namespace paradit::cpu
