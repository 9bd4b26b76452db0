// The embedding gather: a raw copy of table rows into out, in the widest units every row, stride and address
// allow (16 bytes for bf16 rows of a multiple of 8 elements). One thread per unit, grid-stride.
#include <algorithm>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/text_ops.h"
#include "backend/cuda/unit_copy.cuh"

namespace paradit::cuda {
namespace {

struct EmbedArgs {
  char* out;
  const char* table;
  const int32_t* ids;
  int64_t rows, S, units;         // units per row
  int64_t out_b, out_s, table_v;  // byte strides
};

template <typename U>
__global__ void __launch_bounds__(256) embedding_kernel(EmbedArgs a) {
  const int64_t n = a.rows * a.units;
  const int64_t step = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) {
    const int64_t r = i / a.units, u = i % a.units;
    const int64_t b = r / a.S, s = r % a.S;
    const U* src = reinterpret_cast<const U*>(a.table + int64_t(a.ids[r]) * a.table_v);
    U* dst = reinterpret_cast<U*>(a.out + b * a.out_b + s * a.out_s);
    dst[u] = src[u];
  }
}

}  // namespace

void launch_embedding(const Tensor& out, const Tensor& table, const int32_t* ids, cudaStream_t stream) {
  const int64_t B = out.size(0), S = out.size(1), D = out.size(2);
  const int64_t es = int64_t(out.element_size());
  if (B * S == 0 || D == 0) return;
  EmbedArgs a{static_cast<char*>(out.data()),
              static_cast<const char*>(table.data()),
              ids,
              B * S,
              S,
              0,
              out.stride(0) * es,
              out.stride(1) * es,
              table.stride(0) * es};
  // Strides of size-1 dimensions are never used, so they do not constrain the unit.
  const int unit = unit_bytes({uint64_t(D * es), uint64_t(B > 1 ? a.out_b : 0), uint64_t(S > 1 ? a.out_s : 0),
                               uint64_t(a.table_v), addr(a.out), addr(a.table)});
  a.units = D * es / unit;
  const int64_t n = a.rows * a.units;
  const int64_t blocks = std::min<int64_t>((n + 255) / 256, int64_t(1) << 20);
  dispatch_unit(unit, [&](auto tag) {
    using U = typename decltype(tag)::type;
    embedding_kernel<U><<<unsigned(blocks), 256, 0, stream>>>(a);
  });
  PD_CUDA_CHECK_LAUNCH("embedding_kernel");
}

}  // namespace paradit::cuda
