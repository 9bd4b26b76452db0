// GPU op tests: one logical tensor on both backends (CPU f32 reference, GPU bf16) with the same values, and
// the comparisons the op tests make. Header-only: only the tests under tests/gpu include it.
#pragma once

#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <memory>

#include "test_util.h"

namespace paradit::test {

// Host f32 values rounded to bf16 (and back), so the CPU reference sees exactly what the GPU sees.
inline Tensor bf16_values(const Tensor& host) {
  Tensor out = to_contiguous_f32(host);
  float* p = out.data_as<float>();
  for (int64_t i = 0; i < out.numel(); ++i) p[i] = bf16_to_f32(f32_to_bf16(p[i]));
  return out;
}

inline Tensor f16_values(const Tensor& host) {
  Tensor out = to_contiguous_f32(host);
  float* p = out.data_as<float>();
  for (int64_t i = 0; i < out.numel(); ++i) p[i] = f16_to_f32(f32_to_f16(p[i]));
  return out;
}

// One logical tensor on both backends: f32 on the CPU, bf16 (or f32/f16) on the GPU, same values.
struct Pair {
  Tensor cpu, gpu;
};

struct Env {
  std::unique_ptr<Backend> cpu;
  Backend* gpu;

  Pair from_host(Tensor h, DType gpu_dtype = DType::kBF16) const {
    if (gpu_dtype == DType::kBF16) h = bf16_values(h);
    if (gpu_dtype == DType::kF16) h = f16_values(h);
    return {cpu->upload(h, DType::kF32), gpu->upload(h, gpu_dtype)};
  }
  Pair input(const Shape& shape, uint64_t seed, float stddev = 1.0f, DType gpu_dtype = DType::kBF16) const {
    return from_host(random_host(shape, seed, stddev), gpu_dtype);
  }
  Pair poisoned(const Shape& shape, DType gpu_dtype = DType::kBF16) const {
    Pair p{cpu->empty(shape, DType::kF32), gpu->empty(shape, gpu_dtype)};
    cpu->fill(p.cpu, std::numeric_limits<float>::quiet_NaN());
    gpu->fill(p.gpu, std::numeric_limits<float>::quiet_NaN());
    return p;
  }
  // Relative L2 error of the GPU side against the CPU side (printed, so a run shows the margins).
  double rel(const Pair& p) const {
    const double e = rel_l2(gpu->download_f32(p.gpu), cpu->download_f32(p.cpu));
    std::printf("    rel L2 %.2e  %s\n", e, shape_str(p.gpu.shape()).c_str());
    return e;
  }
  double max_abs(const Pair& p) const { return max_abs_diff(gpu->download_f32(p.gpu), cpu->download_f32(p.cpu)); }
  int64_t nan_count(const Tensor& t) const {
    const Tensor h = gpu->download_f32(t);
    int64_t n = 0;
    for (int64_t i = 0; i < h.numel(); ++i) n += std::isnan(h.data_as<float>()[i]) ? 1 : 0;
    return n;
  }
};

inline Pair view(const Pair& p, const std::function<Tensor(const Tensor&)>& f) { return {f(p.cpu), f(p.gpu)}; }

#define PD_GPU_ENV(env)                                   \
  PD_REQUIRE_GPU(cuda_backend_);                          \
  Env env{create_cpu_backend(), cuda_backend_.get()}

// Column chunk i of width w along the last dimension.
inline std::function<Tensor(const Tensor&)> chunk(int64_t i, int64_t w) {
  return [=](const Tensor& t) { return t.slice(t.dim() - 1, i * w, w); };
}

}  // namespace paradit::test
