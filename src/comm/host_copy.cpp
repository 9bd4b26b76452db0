#include "comm/host_copy.h"

#include <cstring>
#include <vector>

#include "paradit/core/status.h"

namespace paradit {

namespace {

// A shape walked jointly with two stride sets, reduced to as few dimensions as possible: size-1 dimensions
// dropped, neighbours merged where both tensors are contiguous across them. The innermost dimension is a run
// of consecutive elements in both when both its strides are 1.
struct Walk {
  std::vector<int64_t> shape, a, b;
};

Walk coalesce(const Shape& shape, const Shape& sa, const Shape& sb) {
  Walk w;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == 1) continue;
    if (!w.shape.empty() && w.a.back() == sa[i] * shape[i] && w.b.back() == sb[i] * shape[i]) {
      w.shape.back() *= shape[i];
      w.a.back() = sa[i];
      w.b.back() = sb[i];
      continue;
    }
    w.shape.push_back(shape[i]);
    w.a.push_back(sa[i]);
    w.b.push_back(sb[i]);
  }
  return w;
}

// Calls fn(offset_a, offset_b, n) for runs of n elements consecutive in both tensors (offsets in elements).
template <typename Fn>
void for_each_run(const Shape& shape, const Shape& sa, const Shape& sb, Fn&& fn) {
  if (shape_numel(shape) == 0) return;
  Walk w = coalesce(shape, sa, sb);
  int64_t run = 1;
  if (!w.shape.empty() && w.a.back() == 1 && w.b.back() == 1) {
    run = w.shape.back();
    w.shape.pop_back();
    w.a.pop_back();
    w.b.pop_back();
  }
  const int n = int(w.shape.size());
  std::vector<int64_t> idx(n, 0);
  int64_t oa = 0, ob = 0;
  for (;;) {
    fn(oa, ob, run);
    int d = n - 1;
    for (; d >= 0; --d) {
      oa += w.a[d];
      ob += w.b[d];
      if (++idx[d] < w.shape[d]) break;
      oa -= w.a[d] * w.shape[d];
      ob -= w.b[d] * w.shape[d];
      idx[d] = 0;
    }
    if (d < 0) return;
  }
}

void require_host(const Tensor& t, const char* what) {
  PD_REQUIRE(t.defined() && t.device().is_cpu(), what, ": expected a host tensor, got ",
             t.defined() ? t.desc() : std::string("an undefined tensor"));
}

}  // namespace

void host_copy(const Tensor& dst, const Tensor& src) {
  require_host(dst, "host_copy");
  require_host(src, "host_copy");
  PD_CHECK(dst.shape() == src.shape() && dst.dtype() == src.dtype(), dst.desc(), " <- ", src.desc());
  if (dst.data() == src.data() && dst.strides() == src.strides()) return;
  const size_t es = dst.element_size();
  char* d = static_cast<char*>(dst.data());
  const char* s = static_cast<const char*>(src.data());
  for_each_run(dst.shape(), dst.strides(), src.strides(), [&](int64_t od, int64_t os, int64_t n) {
    std::memcpy(d + od * int64_t(es), s + os * int64_t(es), size_t(n) * es);
  });
}

void host_accumulate(float* acc, const Tensor& src) {
  require_host(src, "host_accumulate");
  const size_t es = src.element_size();
  const char* s = static_cast<const char*>(src.data());
  std::vector<float> buf;
  for_each_run(src.shape(), contiguous_strides(src.shape()), src.strides(), [&](int64_t oa, int64_t os, int64_t n) {
    float* a = acc + oa;
    if (src.dtype() == DType::kF32) {
      const float* x = reinterpret_cast<const float*>(s + os * int64_t(es));
      for (int64_t i = 0; i < n; ++i) a[i] += x[i];
      return;
    }
    buf.resize(size_t(n));
    convert_host(buf.data(), DType::kF32, s + os * int64_t(es), src.dtype(), size_t(n));
    for (int64_t i = 0; i < n; ++i) a[i] += buf[size_t(i)];
  });
}

void host_store(const Tensor& dst, const float* acc) {
  require_host(dst, "host_store");
  const size_t es = dst.element_size();
  char* d = static_cast<char*>(dst.data());
  for_each_run(dst.shape(), contiguous_strides(dst.shape()), dst.strides(), [&](int64_t oa, int64_t od, int64_t n) {
    convert_host(d + od * int64_t(es), dst.dtype(), acc + oa, DType::kF32, size_t(n));
  });
}

}  // namespace paradit
