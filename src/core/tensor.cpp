#include "paradit/core/tensor.h"

#include <sstream>

#include "paradit/core/status.h"

namespace paradit {

std::string shape_str(const Shape& s) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  os << "]";
  return os.str();
}

Shape contiguous_strides(const Shape& shape) {
  Shape st(shape.size());
  int64_t acc = 1;
  for (int i = int(shape.size()) - 1; i >= 0; --i) {
    st[i] = acc;
    acc *= shape[i];
  }
  return st;
}

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

Tensor Tensor::empty(const Shape& shape, DType dtype, Allocator& alloc) {
  for (auto d : shape) PD_REQUIRE(d >= 0, "negative dimension in shape ", shape_str(shape));
  Tensor t;
  const size_t bytes = size_t(shape_numel(shape)) * dtype_size(dtype);
  void* p = alloc.allocate(bytes);
  t.storage_ = std::make_shared<Storage>(p, bytes, alloc.device(), &alloc);
  t.shape_ = shape;
  t.strides_ = contiguous_strides(shape);
  t.dtype_ = dtype;
  return t;
}

Tensor Tensor::borrow(void* data, const Shape& shape, DType dtype, Device device) {
  return borrow(data, shape, contiguous_strides(shape), dtype, device);
}

Tensor Tensor::borrow(void* data, const Shape& shape, const Shape& strides, DType dtype, Device device) {
  PD_CHECK(shape.size() == strides.size());
  Tensor t;
  t.storage_ = std::make_shared<Storage>(data, size_t(shape_numel(shape)) * dtype_size(dtype), device, nullptr);
  t.shape_ = shape;
  t.strides_ = strides;
  t.dtype_ = dtype;
  return t;
}

Tensor Tensor::borrow(void* data, const Shape& shape, DType dtype, Device device, std::shared_ptr<void> owner) {
  Tensor t;
  t.storage_ = std::make_shared<Storage>(data, size_t(shape_numel(shape)) * dtype_size(dtype), device, nullptr,
                                         std::move(owner));
  t.shape_ = shape;
  t.strides_ = contiguous_strides(shape);
  t.dtype_ = dtype;
  return t;
}

bool Tensor::is_contiguous() const {
  int64_t acc = 1;
  for (int i = dim() - 1; i >= 0; --i) {
    if (shape_[i] != 1 && strides_[i] != acc) return false;
    acc *= shape_[i];
  }
  return true;
}

int Tensor::norm_dim(int d) const {
  const int n = dim();
  if (d < 0) d += n;
  PD_CHECK(d >= 0 && d < n, "dimension ", d, " out of range for ", desc());
  return d;
}

Tensor Tensor::view(const Shape& shape) const {
  PD_CHECK(is_contiguous(), "view of a non-contiguous tensor ", desc());
  Shape s = shape;
  int64_t known = 1;
  int infer = -1;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == -1) {
      PD_CHECK(infer < 0, "two -1 in view ", shape_str(shape));
      infer = int(i);
    } else {
      known *= s[i];
    }
  }
  if (infer >= 0) s[infer] = known ? numel() / known : 0;
  PD_CHECK(shape_numel(s) == numel(), "view ", shape_str(shape), " of ", desc());
  Tensor t = *this;
  t.shape_ = s;
  t.strides_ = contiguous_strides(s);
  return t;
}

Tensor Tensor::slice(int d, int64_t start, int64_t length) const {
  d = norm_dim(d);
  PD_CHECK(start >= 0 && length >= 0 && start + length <= shape_[d], "slice [", start, ", ", start + length,
           ") of dim ", d, " of ", desc());
  Tensor t = *this;
  t.offset_ += start * strides_[d];
  t.shape_[d] = length;
  return t;
}

Tensor Tensor::select(int d, int64_t i) const {
  d = norm_dim(d);
  Tensor t = slice(d, i, 1);
  t.shape_.erase(t.shape_.begin() + d);
  t.strides_.erase(t.strides_.begin() + d);
  return t;
}

Tensor Tensor::unflatten(int d, int64_t a, int64_t b) const {
  d = norm_dim(d);
  const int64_t n = shape_[d];
  if (a == -1) a = n / b;
  if (b == -1) b = n / a;
  PD_CHECK(a * b == n, "unflatten ", n, " into ", a, "x", b);
  Tensor t = *this;
  t.shape_[d] = a;
  t.shape_.insert(t.shape_.begin() + d + 1, b);
  t.strides_[d] = strides_[d] * b;
  t.strides_.insert(t.strides_.begin() + d + 1, strides_[d]);
  return t;
}

Tensor Tensor::transpose(int d0, int d1) const {
  d0 = norm_dim(d0);
  d1 = norm_dim(d1);
  Tensor t = *this;
  std::swap(t.shape_[d0], t.shape_[d1]);
  std::swap(t.strides_[d0], t.strides_[d1]);
  return t;
}

Tensor Tensor::unsqueeze(int d) const {
  if (d < 0) d += dim() + 1;
  PD_CHECK(d >= 0 && d <= dim());
  Tensor t = *this;
  const int64_t st = d < dim() ? strides_[d] * shape_[d] : 1;
  t.shape_.insert(t.shape_.begin() + d, 1);
  t.strides_.insert(t.strides_.begin() + d, st);
  return t;
}

std::string Tensor::desc() const {
  return std::string(dtype_name(dtype_)) + shape_str(shape_) + " on " + device().str();
}

}  // namespace paradit
