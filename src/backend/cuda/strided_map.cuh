// One grid-stride kernel for every elementwise job over tensors of the same shape and arbitrary strides: copies
// with dtype conversion, fills, the random fill, activations, adds and the gated residual add.
//
// The host side first simplifies the iteration space: size-1 dimensions are dropped and neighbours that are
// contiguous in every tensor are merged, so contiguous tensors become one flat dimension and a column slice
// of a wider buffer becomes [rows, width]. Each thread then handles VEC consecutive elements of the innermost
// dimension with one vector access per tensor (16 bytes for bf16 when VEC = 8) whenever every tensor's
// pointer, strides and inner extent allow it, else one element. Index arithmetic is 32-bit unless a tensor
// spans 2³¹ elements.
//
// An op is a functor with `template <int VEC, typename Index> __device__ void apply(char* const* base,
// const Index* off, Index elem) const`: base[t] + off[t] elements (of tensor t's type) is where its VEC
// elements start, and elem is the row-major index of the first of them in the original shape.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cstdint>

#include "backend/cuda/cuda_check.h"
#include "paradit/core/status.h"
#include "paradit/core/tensor.h"

namespace paradit::cuda {

constexpr int kMaxDims = 6;

// The simplified iteration space of NT tensors (host side, 64-bit, strides in elements).
template <int NT>
struct StridedLayout {
  int ndim = 0;
  int64_t size[kMaxDims] = {};
  int64_t stride[NT][kMaxDims] = {};
  int64_t numel = 1;
};

// Builds the layout of `shape` for NT tensors with the given strides (each of the shape's rank; a stride of 0
// broadcasts). Throws kUnimplemented when more than kMaxDims dimensions remain after merging.
template <int NT>
StridedLayout<NT> make_layout(const char* op, const Shape& shape, const std::array<Shape, size_t(NT)>& strides) {
  StridedLayout<NT> l;
  int64_t sz[16];
  int64_t st[NT][16];
  int n = 0;
  PD_REQUIRE(shape.size() <= 16, op, ": rank ", shape.size(), " is above 16");
  for (size_t d = 0; d < shape.size(); ++d) {
    l.numel *= shape[d];
    if (shape[d] == 1) continue;
    // Merge into the previous kept dimension when it steps exactly over this one in every tensor.
    bool merge = n > 0;
    for (int t = 0; t < NT && merge; ++t) merge = st[t][n - 1] == strides[t][d] * shape[d];
    if (merge) {
      sz[n - 1] *= shape[d];
      for (int t = 0; t < NT; ++t) st[t][n - 1] = strides[t][d];
    } else {
      sz[n] = shape[d];
      for (int t = 0; t < NT; ++t) st[t][n] = strides[t][d];
      ++n;
    }
  }
  if (n == 0) {  // a scalar, or every dimension of size 1
    sz[0] = 1;
    for (int t = 0; t < NT; ++t) st[t][0] = 1;
    n = 1;
  }
  if (n > kMaxDims)
    PD_THROW(kUnimplemented, op, ": strided iteration over ", n, " non-mergeable dimensions (shape ", shape_str(shape),
             ") is above the CUDA backend's ", kMaxDims);
  l.ndim = n;
  for (int d = 0; d < n; ++d) {
    l.size[d] = sz[d];
    for (int t = 0; t < NT; ++t) l.stride[t][d] = st[t][d];
  }
  if (l.numel == 0) l.ndim = 0;
  return l;
}

// Whether VEC elements at a time can be moved with aligned vector accesses in every tensor.
template <int NT>
bool can_vectorize(const StridedLayout<NT>& l, const std::array<const void*, size_t(NT)>& ptr,
                   const std::array<int, size_t(NT)>& elem_size, int vec) {
  if (vec == 1) return true;
  if (l.ndim == 0 || l.size[l.ndim - 1] % vec != 0) return false;
  for (int t = 0; t < NT; ++t) {
    const int64_t align = std::min<int64_t>(16, int64_t(vec) * elem_size[t]);
    if (l.stride[t][l.ndim - 1] != 1) return false;
    if (reinterpret_cast<uintptr_t>(ptr[t]) % uintptr_t(align) != 0) return false;
    for (int d = 0; d < l.ndim - 1; ++d)
      if ((l.stride[t][d] * elem_size[t]) % align != 0) return false;
  }
  return true;
}

template <int NT>
struct MapPtrs {
  char* p[NT];
};

template <int NT, typename Index>
struct MapIter {
  int ndim;
  Index size[kMaxDims];
  Index stride[NT][kMaxDims];
};

template <int NT, int VEC, typename Index, typename Op>
__global__ void __launch_bounds__(256) strided_map_kernel(MapPtrs<NT> base, MapIter<NT, Index> it, Index n, Op op) {
  const Index step = Index(gridDim.x) * Index(blockDim.x);
  for (Index v = Index(blockIdx.x) * Index(blockDim.x) + Index(threadIdx.x); v < n; v += step) {
    Index off[NT];
    if (it.ndim == 1) {
#pragma unroll
      for (int t = 0; t < NT; ++t) off[t] = v * it.stride[t][0];
    } else {
#pragma unroll
      for (int t = 0; t < NT; ++t) off[t] = 0;
      Index rem = v;
#pragma unroll
      for (int d = kMaxDims - 1; d >= 0; --d) {
        if (d < it.ndim) {
          const Index i = rem % it.size[d];
          rem /= it.size[d];
#pragma unroll
          for (int t = 0; t < NT; ++t) off[t] += i * it.stride[t][d];
        }
      }
    }
    op.template apply<VEC, Index>(base.p, off, v * Index(VEC));
  }
}

template <int NT, int VEC, typename Index, typename Op>
void launch_strided_map_as(const char* name, const StridedLayout<NT>& l, const MapPtrs<NT>& base, const Op& op,
                           cudaStream_t stream) {
  MapIter<NT, Index> it{};
  it.ndim = l.ndim;
  for (int d = 0; d < l.ndim; ++d) {
    const bool inner = d == l.ndim - 1;
    it.size[d] = Index(inner ? l.size[d] / VEC : l.size[d]);
    for (int t = 0; t < NT; ++t) it.stride[t][d] = Index(inner ? l.stride[t][d] * VEC : l.stride[t][d]);
  }
  const int64_t n = l.numel / VEC;
  constexpr int kThreads = 256;
  const int64_t blocks = std::min<int64_t>((n + kThreads - 1) / kThreads, int64_t(1) << 20);
  strided_map_kernel<NT, VEC, Index, Op><<<unsigned(blocks), kThreads, 0, stream>>>(base, it, Index(n), op);
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) throw_cuda(err, name, __FILE__, __LINE__);
}

// Runs op over the layout: vectorised by kMaxVec when every tensor allows it, else element by element; 64-bit
// indices only when some offset or the element count reaches 2³¹.
template <int kMaxVec, int NT, typename Op>
void launch_strided_map(const char* name, const StridedLayout<NT>& l, const std::array<void*, size_t(NT)>& ptr,
                        const std::array<int, size_t(NT)>& elem_size, const Op& op, cudaStream_t stream) {
  if (l.ndim == 0 || l.numel == 0) return;
  MapPtrs<NT> base;
  std::array<const void*, size_t(NT)> cptr;
  for (int t = 0; t < NT; ++t) {
    base.p[t] = static_cast<char*>(ptr[t]);
    cptr[t] = ptr[t];
  }
  int64_t max_offset = l.numel;
  for (int t = 0; t < NT; ++t) {
    int64_t span = 0;
    for (int d = 0; d < l.ndim; ++d) span += (l.size[d] - 1) * l.stride[t][d];
    max_offset = std::max(max_offset, span + 16);
  }
  if (max_offset >= (int64_t(1) << 31)) {
    launch_strided_map_as<NT, 1, int64_t>(name, l, base, op, stream);
  } else if (kMaxVec > 1 && can_vectorize(l, cptr, elem_size, kMaxVec)) {
    launch_strided_map_as<NT, kMaxVec, uint32_t>(name, l, base, op, stream);
  } else {
    launch_strided_map_as<NT, 1, uint32_t>(name, l, base, op, stream);
  }
}

}  // namespace paradit::cuda
