// The CUDA backend: one GPU, one stream, one caching allocator over cudaMalloc, a cuBLASLt matmul cache, a
// cuDNN attention-graph cache (with a GEMM + softmax path for what cuDNN does not cover) and a cuDNN conv-plan
// cache. Ops validate their arguments here (cuda_backend.cpp, cuda_ops.cpp) and hand raw pointers and strides
// to the launchers of the kernel families (copy.cu, elementwise.cu, layer_norm.cu, rms_norm_rope.cu,
// text_ops.cu, group_norm.cu, upsample.cu, im2col.cu, attention_softmax.cu) or to the libraries (matmul.cpp,
// attention.cpp, attention_fallback.cpp, conv.cpp).
//
// Two environment variables, read when a backend is created, force the library-free paths (for tests and
// comparisons): PARADIT_CUDA_ATTENTION=gemm (attention by GEMMs + softmax, never cuDNN) and
// PARADIT_CUDA_CONV=gemm (conv2d by im2col + GEMMs, never cuDNN).
//
// Every op is enqueued on the backend's stream and returns without waiting (copies to pageable host memory
// excepted, which CUDA completes before returning). Scratch blocks go back to the allocator as soon as their
// op is enqueued: reusing them is safe because every op of this backend is ordered on that one stream. A
// backend is used by one thread at a time (one worker per GPU).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "backend/cuda/attention.h"
#include "backend/cuda/attention_fallback.h"
#include "backend/cuda/conv.h"
#include "backend/cuda/matmul.h"
#include "paradit/backend/cuda_backend.h"

namespace paradit {

class CudaBackendImpl final : public CudaBackend {
 public:
  explicit CudaBackendImpl(int index);
  ~CudaBackendImpl() override;

  std::string name() const override { return name_; }
  Device device() const override { return Device::cuda(index_); }
  DType compute_dtype() const override { return DType::kBF16; }
  Allocator& allocator() override { return *alloc_; }
  void synchronize() override;

  void copy(const Tensor& dst, const Tensor& src) override;
  void fill(const Tensor& dst, float value) override;
  void fill_random(const Tensor& dst, uint64_t seed, float stddev) override;

  void linear(const Tensor& y, const Tensor& x, const Tensor& w, const Tensor& bias, Epilogue ep) override;
  void layer_norm_modulate(const Tensor& y, const Tensor& x, const Tensor& shift, const Tensor& scale,
                           float eps) override;
  void gated_add_layer_norm_modulate(const Tensor& y, const Tensor& x, const Tensor& delta, const Tensor& gate,
                                     const Tensor& shift, const Tensor& scale, float eps) override;
  void rms_norm_rope(const Tensor& y, const Tensor& x, const Tensor& weight, const Tensor& cos, const Tensor& sin,
                     float eps) override;
  void qk_norm_rope(const Tensor& q, const Tensor& k, const Tensor& q_weight, const Tensor& k_weight,
                    const Tensor& cos, const Tensor& sin, float eps) override;
  void attention(const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
                 float scale) override;
  void lse_merge(const Tensor& out, const Tensor& lse, const std::vector<Tensor>& block_outs,
                 const std::vector<Tensor>& block_lses) override;

  void silu(const Tensor& y, const Tensor& x) override;
  void gelu_tanh(const Tensor& y, const Tensor& x) override;
  void add(const Tensor& y, const Tensor& a, const Tensor& b) override;
  void gated_add(const Tensor& x, const Tensor& y, const Tensor& gate) override;
  void axpby(const Tensor& y, const Tensor& a, float alpha, const Tensor& b, float beta) override;
  void mul(const Tensor& y, const Tensor& a, const Tensor& b) override;
  void quick_gelu(const Tensor& y, const Tensor& x) override;

  void embedding(const Tensor& out, const Tensor& table, const std::vector<int32_t>& ids) override;
  void layer_norm(const Tensor& y, const Tensor& x, const Tensor& weight, const Tensor& bias, float eps) override;
  void attention_biased(const Tensor& out, const Tensor& q, const Tensor& k, const Tensor& v, float scale,
                        const Tensor& bias, bool causal) override;

  void conv2d(const Tensor& y, const Tensor& x, const Tensor& w, const Tensor& bias, int pad) override;
  void group_norm(const Tensor& y, const Tensor& x, const Tensor& weight, const Tensor& bias, int groups, float eps,
                  bool silu) override;
  void upsample_nearest2x(const Tensor& y, const Tensor& x) override;
  void to_rgb8(const Tensor& y, uint8_t* dst) override;
  void linear_accumulate(const Tensor& y, const Tensor& x, const Tensor& w) override;
  void group_norm_sums(const Tensor& sums, const Tensor& x, int groups, const Tensor& shift) override;
  void group_norm_apply(const Tensor& y, const Tensor& x, const Tensor& sums, const Tensor& shift, double count,
                        const Tensor& weight, const Tensor& bias, int groups, float eps, bool silu) override;

  AllocatorStats memory_stats() const override { return alloc_->stats(); }
  void reset_peak() override { alloc_->reset_peak(); }
  void release_cached() override { alloc_->release_cached(); }
  void* stream() const override { return stream_; }

 protected:
  std::unique_ptr<RegionClock> make_region_clock() override;

 private:
  void release() noexcept;
  // The tensor is defined and lives on this backend's GPU.
  void require_here(const char* op, const char* name, const Tensor& t) const;
  // rms_norm_rope's arguments (also each half of qk_norm_rope's).
  void check_rms_norm_rope(const char* op, const Tensor& y, const Tensor& x, const Tensor& weight, const Tensor& cos,
                           const Tensor& sin, float eps) const;
  void copy_host_to_device(const Tensor& dst, const Tensor& src);
  void copy_device_to_host(const Tensor& dst, const Tensor& src);
  // q, k, v, out of attention/attention_biased: bf16 [B, S, H, d] with matching sizes.
  void check_attention(const char* op, const Tensor& out, const Tensor& q, const Tensor& k, const Tensor& v) const;
  // linear/linear_accumulate's checks, and their problem in cuBLASLt's terms.
  cuda::GemmProblem gemm_problem(const char* op, const Tensor& y, const Tensor& x, const Tensor& w) const;
  cuda::GemmAttention& gemm_attention();

  int index_;
  std::string name_;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<CachingAllocator> alloc_;
  std::unique_ptr<cuda::LtMatmul> matmul_;
  std::unique_ptr<cuda::Sdpa> sdpa_;  // created at the first attention call (cuDNN loads its engines then)
  std::unique_ptr<cuda::GemmAttention> gemm_attention_;  // created at first use
  std::unique_ptr<cuda::Conv2d> conv_;                   // created at the first conv2d call
  bool force_gemm_attention_ = false;                    // PARADIT_CUDA_ATTENTION=gemm
  bool force_gemm_conv_ = false;                         // PARADIT_CUDA_CONV=gemm
};

namespace cuda {

// Makes `index` the calling thread's current device for the guard's lifetime (ops may be called from a thread
// whose current device is another GPU).
class DeviceGuard {
 public:
  explicit DeviceGuard(int index);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int prev_ = -1, index_;
};

}  // namespace cuda
}  // namespace paradit
