// Argument checks and row access shared by the CPU ops.
//
// Ops validate everything before touching memory, so nothing inside an OpenMP region can throw.
#pragma once

#include <cstdint>
#include <vector>

#include "paradit/core/status.h"
#include "paradit/core/tensor.h"

namespace paradit::cpu {

// t is defined and lives in host memory.
void require_host(const char* op, const char* name, const Tensor& t);
// t is a defined host f32 tensor of rank >= 1 whose last dimension is contiguous (the layout convention).
void require_f32_rows(const char* op, const char* name, const Tensor& t);
// t has exactly this shape.
void require_shape(const char* op, const char* name, const Tensor& t, const Shape& want);
// t is a contiguous host f32 tensor (weights, RoPE tables).
void require_f32_contiguous(const char* op, const char* name, const Tensor& t);

// Whether the memory spans of two tensors intersect (a conservative test on address ranges), for ops whose
// output must not overwrite an input it still reads.
bool may_overlap(const Tensor& a, const Tensor& b);

// The rows (last-dimension vectors) of a tensor whose last dimension is contiguous, addressed by a flat row
// index in row-major order over the leading dimensions, whatever their strides.
class Rows {
 public:
  explicit Rows(const Tensor& t);
  int64_t count() const { return count_; }
  int64_t width() const { return width_; }
  float* row(int64_t r) const { return base_ + offset(r); }
  int64_t offset(int64_t r) const {
    int64_t off = 0;
    for (int d = int(sizes_.size()) - 1; d >= 0; --d) {
      off += (r % sizes_[d]) * strides_[d];
      r /= sizes_[d];
    }
    return off;
  }

 private:
  float* base_ = nullptr;
  int64_t count_ = 0, width_ = 0;
  std::vector<int64_t> sizes_, strides_;  // leading dimensions
};

// Runs fn(i) for i in [0, n) over up to `threads` OpenMP threads; small jobs (n·cost below a few tens of
// thousands of flops) stay on the calling thread, where a parallel region would cost more than it saves.
template <typename Fn>
void parallel_for(int threads, int64_t n, int64_t cost_per_item, Fn&& fn) {
  const bool parallel = threads > 1 && n > 1 && n * cost_per_item >= (1 << 15);
#pragma omp parallel for num_threads(threads) schedule(static) if (parallel)
  for (int64_t i = 0; i < n; ++i) fn(i);
}

// Same, with dynamic scheduling for items of uneven cost (matmul tiles, attention blocks).
template <typename Fn>
void parallel_for_dynamic(int threads, int64_t n, Fn&& fn) {
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1) if (threads > 1 && n > 1)
  for (int64_t i = 0; i < n; ++i) fn(i);
}

}  // namespace paradit::cpu
