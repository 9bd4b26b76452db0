// copy, fill, fill_random: any strides, any dtypes (fp8 only as a source).
#include <algorithm>
#include <cstring>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_check.h"
#include "paradit/core/random.h"

namespace paradit {
namespace {

// A tensor walk reduced to (outer rows) × (one inner run): size-1 dimensions dropped and dimensions merged
// wherever every tensor walked is contiguous across them. Merging keeps row-major order, so element
// (r, j) has logical row-major index r·inner + j.
struct Walk {
  int64_t inner = 1;                      // elements per run
  std::vector<int64_t> inner_stride;      // per tensor
  std::vector<int64_t> outer_sizes;       // outer dims, row-major
  std::vector<std::vector<int64_t>> outer_strides;  // [tensor][dim]
  int64_t outer_count = 1;

  int64_t offset(size_t t, int64_t r) const {
    int64_t off = 0;
    for (int d = int(outer_sizes.size()) - 1; d >= 0; --d) {
      off += (r % outer_sizes[d]) * outer_strides[t][d];
      r /= outer_sizes[d];
    }
    return off;
  }
};

Walk make_walk(const std::vector<const Tensor*>& ts) {
  const Shape& shape = ts[0]->shape();
  const size_t n = ts.size();
  std::vector<int64_t> sizes;
  std::vector<std::vector<int64_t>> strides(n);
  for (int d = 0; d < int(shape.size()); ++d) {
    if (shape[d] == 1) continue;
    bool merge = !sizes.empty();
    for (size_t t = 0; t < n && merge; ++t) merge = strides[t].back() == ts[t]->stride(d) * shape[d];
    if (merge) {
      sizes.back() *= shape[d];
      for (size_t t = 0; t < n; ++t) strides[t].back() = ts[t]->stride(d);
    } else {
      sizes.push_back(shape[d]);
      for (size_t t = 0; t < n; ++t) strides[t].push_back(ts[t]->stride(d));
    }
  }
  Walk w;
  w.inner_stride.assign(n, 1);
  w.outer_strides.resize(n);
  if (sizes.empty()) return w;  // a single element
  w.inner = sizes.back();
  for (size_t t = 0; t < n; ++t) {
    w.inner_stride[t] = strides[t].back();
    w.outer_strides[t].assign(strides[t].begin(), strides[t].end() - 1);
  }
  w.outer_sizes.assign(sizes.begin(), sizes.end() - 1);
  for (auto s : w.outer_sizes) w.outer_count *= s;
  return w;
}

inline float load_f32(const char* p, DType t) {
  switch (t) {
    case DType::kF32: { float f; std::memcpy(&f, p, 4); return f; }
    case DType::kBF16: { uint16_t h; std::memcpy(&h, p, 2); return bf16_to_f32(h); }
    case DType::kF16: { uint16_t h; std::memcpy(&h, p, 2); return f16_to_f32(h); }
    case DType::kF8E4M3: return f8e4m3_to_f32(uint8_t(*p));
  }
  return 0;
}

// fp8 destinations are refused before any walk, so this never sees one.
inline void store_f32(char* p, DType t, float v) {
  switch (t) {
    case DType::kF32: std::memcpy(p, &v, 4); return;
    case DType::kBF16: { uint16_t h = f32_to_bf16(v); std::memcpy(p, &h, 2); return; }
    case DType::kF16: { uint16_t h = f32_to_f16(v); std::memcpy(p, &h, 2); return; }
    case DType::kF8E4M3: return;
  }
}

// Calls fn(r, j0, j1) for pieces [j0, j1) of every run r, in parallel. Long runs (a contiguous weight is a
// single run) are cut into pieces so that every thread gets work.
template <typename Fn>
void for_each_piece(int threads, const Walk& w, int64_t cost_per_element, Fn&& fn) {
  constexpr int64_t kPiece = 16384;
  int64_t pieces = 1;
  if (threads > 1 && w.outer_count < 4 * threads && w.inner >= 2 * kPiece)
    pieces = std::min<int64_t>((w.inner + kPiece - 1) / kPiece, 4 * threads);
  const int64_t len = (w.inner + pieces - 1) / pieces;
  cpu::parallel_for(threads, w.outer_count * pieces, len * cost_per_element, [&](int64_t i) {
    const int64_t r = i / pieces, j0 = (i % pieces) * len;
    fn(r, j0, std::min(w.inner, j0 + len));
  });
}

void require_writable_dtype(const char* op, const Tensor& dst) {
  if (dst.dtype() == DType::kF8E4M3)
    PD_THROW(kUnimplemented, op, ": writing f8_e4m3 is not supported (dst ", dst.desc(), ")");
}

}  // namespace

void CpuBackend::copy(const Tensor& dst, const Tensor& src) {
  cpu::require_host("copy", "dst", dst);
  cpu::require_host("copy", "src", src);
  PD_REQUIRE(dst.shape() == src.shape(), "copy: dst ", dst.desc(), " and src ", src.desc(), " differ in shape");
  require_writable_dtype("copy", dst);
  if (dst.numel() == 0) return;
  const Walk w = make_walk({&dst, &src});
  const DType dt = dst.dtype(), st = src.dtype();
  const int64_t des = int64_t(dst.element_size()), ses = int64_t(src.element_size());
  char* dbase = static_cast<char*>(dst.data());
  const char* sbase = static_cast<const char*>(src.data());
  const bool runs_contiguous = w.inner_stride[0] == 1 && w.inner_stride[1] == 1;
  for_each_piece(threads_, w, 1, [&](int64_t r, int64_t j0, int64_t j1) {
    char* d = dbase + w.offset(0, r) * des;
    const char* s = sbase + w.offset(1, r) * ses;
    if (runs_contiguous) {
      convert_host(d + j0 * des, dt, s + j0 * ses, st, size_t(j1 - j0));
    } else {
      for (int64_t j = j0; j < j1; ++j)
        store_f32(d + j * w.inner_stride[0] * des, dt, load_f32(s + j * w.inner_stride[1] * ses, st));
    }
  });
}

void CpuBackend::fill(const Tensor& dst, float value) {
  cpu::require_host("fill", "dst", dst);
  require_writable_dtype("fill", dst);
  if (dst.numel() == 0) return;
  const Walk w = make_walk({&dst});
  const int64_t es = int64_t(dst.element_size());
  char pattern[4];
  store_f32(pattern, dst.dtype(), value);
  char* base = static_cast<char*>(dst.data());
  for_each_piece(threads_, w, 1, [&](int64_t r, int64_t j0, int64_t j1) {
    char* d = base + w.offset(0, r) * es;
    for (int64_t j = j0; j < j1; ++j) std::memcpy(d + j * w.inner_stride[0] * es, pattern, size_t(es));
  });
}

void CpuBackend::fill_random(const Tensor& dst, uint64_t seed, float stddev) {
  cpu::require_host("fill_random", "dst", dst);
  require_writable_dtype("fill_random", dst);
  if (dst.numel() == 0) return;
  const Walk w = make_walk({&dst});
  const int64_t es = int64_t(dst.element_size());
  const DType dt = dst.dtype();
  char* base = static_cast<char*>(dst.data());
  for_each_piece(threads_, w, 8, [&](int64_t r, int64_t j0, int64_t j1) {
    char* d = base + w.offset(0, r) * es;
    const uint64_t first = uint64_t(r) * uint64_t(w.inner);  // row-major index of the run's first element
    for (int64_t j = j0; j < j1; ++j)
      store_f32(d + j * w.inner_stride[0] * es, dt, random_uniform_value(seed, first + uint64_t(j), stddev));
  });
}

}  // namespace paradit
