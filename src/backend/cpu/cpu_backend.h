// The fp32 reference backend: host memory, OpenMP over rows, OpenBLAS for matmuls.
//
// Every other backend is checked against this one, so correctness comes before speed: accumulations that
// feed a normalisation (LayerNorm, RMSNorm, softmax sums) are done in double.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "paradit/backend/backend.h"

namespace paradit {

class CpuBackend final : public Backend {
 public:
  // threads = 0 uses every core; tensors come from `allocator` (host memory).
  explicit CpuBackend(int threads, Allocator& allocator = cpu_allocator());

  std::string name() const override;
  Device device() const override { return Device::cpu(); }
  DType compute_dtype() const override { return DType::kF32; }
  Allocator& allocator() override { return *allocator_; }
  void synchronize() override {}  // every op has finished when it returns

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

  // Text encoders.
  void embedding(const Tensor& out, const Tensor& table, const std::vector<int32_t>& ids) override;
  void layer_norm(const Tensor& y, const Tensor& x, const Tensor& weight, const Tensor& bias, float eps) override;
  void attention_biased(const Tensor& out, const Tensor& q, const Tensor& k, const Tensor& v, float scale,
                        const Tensor& bias, bool causal) override;

  // VAE.
  void conv2d(const Tensor& y, const Tensor& x, const Tensor& w, const Tensor& bias, int pad) override;
  void group_norm(const Tensor& y, const Tensor& x, const Tensor& weight, const Tensor& bias, int groups, float eps,
                  bool silu) override;
  void upsample_nearest2x(const Tensor& y, const Tensor& x) override;
  void to_rgb8(const Tensor& y, uint8_t* dst) override;
  void linear_accumulate(const Tensor& y, const Tensor& x, const Tensor& w) override;
  void group_norm_sums(const Tensor& sums, const Tensor& x, int groups, const Tensor& shift) override;
  void group_norm_apply(const Tensor& y, const Tensor& x, const Tensor& sums, const Tensor& shift, double count,
                        const Tensor& weight, const Tensor& bias, int groups, float eps, bool silu) override;

  int threads() const { return threads_; }

 private:
  int threads_;
  Allocator* allocator_;
};

}  // namespace paradit
