#include "paradit/backend/backend.h"

namespace paradit {

Tensor Backend::upload(const Tensor& host, DType dtype) {
  Tensor t = empty(host.shape(), dtype);
  copy(t, host);
  return t;
}

Tensor Backend::download_f32(const Tensor& t) {
  Tensor host = Tensor::empty(t.shape(), DType::kF32, cpu_allocator());
  copy(host, t);
  synchronize();
  return host;
}

}  // namespace paradit
