// The op set the models need, once per device kind.
//
// Models are written once against this interface; a backend owns a device, its allocator and its stream.
// Every op validates its arguments and throws paradit::Error (kInvalidArgument) on a mismatch, naming the
// op and the shapes. Outputs are passed in (preallocated, possibly strided views into bigger buffers), so the
// model decides the memory layout and ops can write straight into the slices that the next op reads: the
// joint text+image QKV buffer, the [attention | MLP] concatenation of a single-stream block.
//
// Layout conventions: the last dimension of every tensor is contiguous; other strides are free unless an op
// says otherwise. Activations and weights are in compute_dtype() (f32 on CPU, bf16 on CUDA); softmax
// statistics, RoPE tables and norms' accumulations are f32.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "paradit/core/tensor.h"

namespace paradit {

// The time a backend spent in the regions of one name (Backend::take_region_times).
struct RegionTime {
  std::string name;
  double ms = 0;
  int64_t count = 0;  // regions so named
};

enum class Epilogue {
  kNone,
  kGeluTanh,  // GELU, tanh approximation: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
};

class Backend {
 public:
  virtual ~Backend() = default;

  virtual std::string name() const = 0;  // "cpu (8 threads)", "cuda:0 NVIDIA H100 80GB HBM3"
  virtual Device device() const = 0;
  virtual DType compute_dtype() const = 0;
  virtual Allocator& allocator() = 0;

  Tensor empty(const Shape& shape, DType dtype) { return Tensor::empty(shape, dtype, allocator()); }
  Tensor empty(const Shape& shape) { return empty(shape, compute_dtype()); }
  // A device copy of a host tensor, converted to dtype.
  Tensor upload(const Tensor& host, DType dtype);
  // A contiguous host copy of a tensor of this backend, converted to f32.
  Tensor download_f32(const Tensor& t);

  // Blocks until all queued work has finished; reports any asynchronous device error.
  virtual void synchronize() = 0;

  // --- Region timing (`bench pipeline --profile`: where a step's time goes) ---
  // While on, mark_region(name) ends the region running on the backend and starts one called `name`;
  // take_region_times() ends the last one and returns, per name in order of first appearance, the time and
  // count of the regions so named since timing was switched on or last taken. The CPU backend's ops are
  // synchronous, so the host clock times them; the CUDA backend records an event on its stream (the host does
  // not wait) — a region's time is then the GPU's, waits for other streams (NCCL's) included. Off (the default),
  // a mark costs one branch.
  void set_region_timing(bool on);
  void mark_region(const char* name) {
    if (region_clock_) region_clock_->mark(name);
  }
  std::vector<RegionTime> take_region_times();

  // dst = src elementwise: same shape, any strides, any dtypes (converted). Either side may be a host tensor
  // (the other on this backend's device); a host side must then be contiguous.
  virtual void copy(const Tensor& dst, const Tensor& src) = 0;
  virtual void fill(const Tensor& dst, float value) = 0;
  // Deterministic pseudo-random fill, identical on every backend (up to the rounding of dst's dtype):
  // element i (row-major index) = stddev·√3·(2u − 1), u = (splitmix64(seed + i·0x9E3779B97F4A7C15) >> 40)·2⁻²⁴,
  // a uniform law of standard deviation stddev. Used for benchmark weights and CPU-vs-GPU tests.
  virtual void fill_random(const Tensor& dst, uint64_t seed, float stddev) = 0;

  // y = ep(x·wᵀ + bias).  x [B, S, K] (or [M, K]); w [N, K] with contiguous rows (a column range of a wider
  // weight is fine); bias [N] or undefined; y [B, S, N].
  virtual void linear(const Tensor& y, const Tensor& x, const Tensor& w, const Tensor& bias, Epilogue ep) = 0;
  // y += x·wᵀ, the sum formed in f32 from y's value and rounded once. Shapes as linear's; y may not alias x or w.
  // A GEMM split over its input columns: the part whose input is ready runs first, the rest is added later.
  virtual void linear_accumulate(const Tensor& y, const Tensor& x, const Tensor& w) = 0;

  // y = LN(x)·(1 + scale) + shift: LayerNorm over the last dim without affine, then adaLN modulation.
  // x, y [B, S, D]; shift, scale [B, D], or both undefined for a plain LayerNorm.
  virtual void layer_norm_modulate(const Tensor& y, const Tensor& x, const Tensor& shift, const Tensor& scale,
                                   float eps) = 0;

  // x += gate ⊙ delta, then y = LN(x)·(1 + scale) + shift: gated_add and layer_norm_modulate in one pass over x
  // (the residual update that closes one transformer block half and the normalisation that opens the next), with
  // the results of the two ops done one after the other. x, y, delta [B, S, D]; gate, shift, scale [B, D].
  virtual void gated_add_layer_norm_modulate(const Tensor& y, const Tensor& x, const Tensor& delta,
                                             const Tensor& gate, const Tensor& shift, const Tensor& scale,
                                             float eps) = 0;

  // y = RMSNorm(x)·weight over the last dim, then — if cos and sin are defined — RoPE on interleaved pairs:
  // y[2k] = a·cos[2k] − b·sin[2k], y[2k+1] = b·cos[2k+1] + a·sin[2k+1] with (a, b) = normed (x[2k], x[2k+1]).
  // x, y [B, S, H, d] (y may alias x); weight [d]; cos, sin f32 [S, d].
  virtual void rms_norm_rope(const Tensor& y, const Tensor& x, const Tensor& weight, const Tensor& cos,
                             const Tensor& sin, float eps) = 0;
  // In place on attention's q and k, each as rms_norm_rope with its own weight and the same cos/sin (both may be
  // undefined). The CUDA backend makes it one pass that loads a token's cos/sin once for both; this default
  // makes the two calls.
  virtual void qk_norm_rope(const Tensor& q, const Tensor& k, const Tensor& q_weight, const Tensor& k_weight,
                            const Tensor& cos, const Tensor& sin, float eps);

  // out = softmax(scale·q·kᵀ)·v, no mask.  q [B, Sq, H, d]; k, v [B, Skv, H, d]; out [B, Sq, H, d].
  // lse, if defined: f32 [B, H, Sq], lse = log Σ_j exp(scale·q·k_j) — what Ring attention merges with.
  virtual void attention(const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
                         float scale) = 0;

  // Ring attention's log-sum-exp merge of the attention of the same queries over several key/value blocks, in one
  // pass (each block's output read once, the result written once). Per query row and head, with
  // L = log Σ_j exp(block_lses[j]):
  //   out = Σ_j exp(block_lses[j] − L)·block_outs[j],    lse = L (when lse is defined);
  // a block lse of −∞ (no keys in that block) weighs zero; a row without keys in any block gets out 0, lse −∞.
  // block_outs[j], block_lses[j] are what attention() gave for block j: [B, S, H, d] in f32 or compute dtype (one
  // dtype and one set of strides for all), f32 [B, H, S] (one set of strides). out [B, S, H, d] in f32 or compute
  // dtype, lse f32 [B, H, S] or undefined. 1 to kMaxLseMergeBlocks blocks; last dimensions contiguous.
  static constexpr int kMaxLseMergeBlocks = 16;
  virtual void lse_merge(const Tensor& out, const Tensor& lse, const std::vector<Tensor>& block_outs,
                         const std::vector<Tensor>& block_lses) = 0;
  // The checks every backend's lse_merge makes first (shapes, dtypes, devices), throwing kInvalidArgument.
  void check_lse_merge(const Tensor& out, const Tensor& lse, const std::vector<Tensor>& block_outs,
                       const std::vector<Tensor>& block_lses);

  // Elementwise; y may alias an input. Shapes equal.
  virtual void silu(const Tensor& y, const Tensor& x) = 0;
  virtual void gelu_tanh(const Tensor& y, const Tensor& x) = 0;
  virtual void add(const Tensor& y, const Tensor& a, const Tensor& b) = 0;
  // x += gate ⊙ y.  x, y [B, S, D]; gate [B, D] broadcast over S.
  virtual void gated_add(const Tensor& x, const Tensor& y, const Tensor& gate) = 0;
  // y = alpha·a + beta·b in f32 arithmetic; y, a, b may differ in dtype (f32 latents, bf16 velocities).
  virtual void axpby(const Tensor& y, const Tensor& a, float alpha, const Tensor& b, float beta) = 0;
  virtual void mul(const Tensor& y, const Tensor& a, const Tensor& b) = 0;
  // y = x·σ(1.702·x) (CLIP's quick_gelu).
  virtual void quick_gelu(const Tensor& y, const Tensor& x) = 0;

  // --- Text encoders ---
  // out[b, s, :] = table[ids[b·S + s], :].  out [B, S, D]; table [V, D]; ids on the host, each in [0, V).
  virtual void embedding(const Tensor& out, const Tensor& table, const std::vector<int32_t>& ids) = 0;
  // y = LN(x)·weight + bias over the last dim; weight, bias [D] (bias may be undefined).
  virtual void layer_norm(const Tensor& y, const Tensor& x, const Tensor& weight, const Tensor& bias, float eps) = 0;
  // Attention with an additive bias and/or a causal mask: scores = scale·q·kᵀ + bias[h] (bias f32 [H, Sq, Skv],
  // the same for every batch entry, or undefined); causal hides key j > query i. Shapes as attention().
  virtual void attention_biased(const Tensor& out, const Tensor& q, const Tensor& k, const Tensor& v, float scale,
                                const Tensor& bias, bool causal) = 0;

  // --- VAE (images are NHWC: [B, H, W, C], channels contiguous) ---
  // 2-D convolution, stride 1, `pad` zeros on every side: x [B, H, W, Cin]; w [Cout, kh, kw, Cin];
  // bias [Cout] or undefined; y [B, H + 2·pad − kh + 1, W + 2·pad − kw + 1, Cout].
  virtual void conv2d(const Tensor& y, const Tensor& x, const Tensor& w, const Tensor& bias, int pad) = 0;
  // The shape checks every backend's conv2d makes (after its own dtype and layout checks), throwing
  // kInvalidArgument.
  static void check_conv2d_shapes(const Tensor& y, const Tensor& x, const Tensor& w, int pad);
  // GroupNorm: C split into `groups` contiguous groups, statistics over (H, W, C/groups) per batch entry, in f32;
  // affine weight, bias [C]; then SiLU when `silu`.  x, y [B, H, W, C] (y may alias x).
  virtual void group_norm(const Tensor& y, const Tensor& x, const Tensor& weight, const Tensor& bias, int groups,
                          float eps, bool silu) = 0;
  // Nearest-neighbour ×2: y [B, 2H, 2W, C] from x [B, H, W, C].
  virtual void upsample_nearest2x(const Tensor& y, const Tensor& x) = 0;
  // A decoded image as 8 bits, what diffusers' VaeImageProcessor.postprocess and numpy_to_pil give:
  // dst[i] = round((y[i]·0.5 + 0.5).clamp(0, 1)·255) in f32, ties to even (numpy's rounding), NaN → 0. y: a
  // contiguous tensor of this backend in f32 or compute dtype; dst: host memory of y.numel() bytes, written when
  // the call returns. Converting where y lives moves a quarter (f32) of the bytes to the host.
  virtual void to_rgb8(const Tensor& y, uint8_t* dst) = 0;

  // GroupNorm split in two, for an image cut into bands over ranks (the parallel VAE): each rank sums its band,
  // the ranks all-reduce the sums, and each normalises its band with the image-wide statistics.
  // sums f32 [2, B, groups] = (Σ (x − m), Σ (x − m)²) over x's H·W pixels and the group's C/groups channels,
  // accumulated in f32 or wider, with m = shift[b, g] (f32 [B, groups]) or 0 when shift is undefined; an empty x
  // gives zeros. Shifting by a value near the mean keeps the second sum free of cancellation.
  virtual void group_norm_sums(const Tensor& sums, const Tensor& x, int groups, const Tensor& shift) = 0;
  // group_norm with given statistics: for count elements per group (image-wide) that summed to sums about shift
  // (as group_norm_sums gives them), mean = m + s₁/count and var = s₂/count − (s₁/count)²; then
  // y = (x − mean)/√(var + eps)·weight + bias, then SiLU when `silu`.  x, y [B, H, W, C] (y may alias x).
  virtual void group_norm_apply(const Tensor& y, const Tensor& x, const Tensor& sums, const Tensor& shift,
                                double count, const Tensor& weight, const Tensor& bias, int groups, float eps,
                                bool silu) = 0;

 protected:
  // Where region timing reads its clock: the host's by default; the CUDA backend records events instead.
  class RegionClock {
   public:
    virtual ~RegionClock() = default;
    virtual void mark(const char* name) = 0;
    // Ends the current region, returns the totals and starts afresh.
    virtual std::vector<RegionTime> take() = 0;
  };
  virtual std::unique_ptr<RegionClock> make_region_clock();

 private:
  std::unique_ptr<RegionClock> region_clock_;
};

// fp32 reference backend; threads = 0 uses every core.
std::unique_ptr<Backend> create_cpu_backend(int threads = 0);
// The same, its tensors taken from `allocator` (host memory; it must outlive the backend), e.g. a
// CachingAllocator whose statistics measure a run's peak memory.
std::unique_ptr<Backend> create_cpu_backend(int threads, Allocator& allocator);

// bf16 backend on GPU `index`. Throws Error(kUnavailable) with the reason when this build has no CUDA, the
// machine has no GPU, or the driver is too old.
std::unique_ptr<Backend> create_cuda_backend(int index = 0);

// "cpu", "cuda", "cuda:N" or "auto" (the first GPU when there is one, else the CPU with a message saying why).
std::unique_ptr<Backend> create_backend(const std::string& device);

// Number of usable GPUs (0 without CUDA or driver); *why says what is missing when 0.
int cuda_device_count(std::string* why = nullptr);

}  // namespace paradit
