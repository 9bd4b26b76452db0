// conv2d (NHWC, stride 1, zero padding) for Backend::conv2d.
//
// The fast path is cuDNN's convolution forward through the graph API (cudnn_frontend): bf16 x [B, Cin, H, W] and
// filter [Cout, Cin, kh, kw] described with their real NHWC / KRSC strides, f32 accumulation, the bias added by a
// fused pointwise node when cuDNN has a precompiled engine for that (else by a separate broadcast add). Engines
// that compile at run time (seconds per shape), reduce in reduced precision, use FFTs or are nondeterministic
// are left out. The plan for a shape (sizes, strides, padding, with/without bias) is built once and cached;
// later calls bind pointers and execute.
//
// When cuDNN cannot take the layout (channels not a multiple of 8, unaligned pointers or strides — the
// VAE's last conv has 3 output channels) or has no engine for it, the conv runs as GEMMs: im2col of a tile of
// output pixels into a [pixels, kh·kw·Cin] bf16 buffer, then one cuBLASLt GEMM against the weights seen as
// [Cout, kh·kw·Cin] (the bias in its epilogue), tile by tile so that memory stays bounded (128 MiB of im2col).
// K = kh·kw·Cin and Cout are zero-padded to multiples of 8 (a padded copy of the weights, a packed output
// copied into y) so that the GEMM's operands always have 16-byte aligned rows. A 1×1 conv without padding over
// evenly spaced pixels is a single GEMM read straight from x.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <unordered_map>

#include "backend/cuda/matmul.h"
#include "paradit/core/allocator.h"
#include "paradit/core/tensor.h"

namespace paradit::cuda {

class Conv2d {
 public:
  // force_gemm: never use cuDNN (PARADIT_CUDA_CONV=gemm; for tests and comparisons).
  Conv2d(cudaStream_t stream, LtMatmul& matmul, bool force_gemm);
  ~Conv2d();
  Conv2d(const Conv2d&) = delete;
  Conv2d& operator=(const Conv2d&) = delete;

  // y = conv(x, w) + bias: x bf16 [B, H, W, Cin], w bf16 [Cout, kh, kw, Cin] contiguous, bias bf16 [Cout]
  // contiguous or undefined, y bf16 [B, Ho, Wo, Cout]; channels contiguous in x and y, other strides free.
  // Shapes are validated by the caller. Scratch comes from `alloc`.
  void run(const Tensor& y, const Tensor& x, const Tensor& w, const Tensor& bias, int pad, Allocator& alloc);

 private:
  struct Key {
    int64_t b, h, w, cin, cout, kh, kw, pad;
    int64_t xs[3], ys[3];  // batch, row, pixel strides (elements; normalised for size-1 dimensions)
    bool bias;
    bool operator==(const Key& o) const;
  };
  struct KeyHash {
    size_t operator()(const Key& k) const;
  };
  struct Entry;

  // The cached cuDNN plan for key (built on first use); its graph is null when cuDNN has no engine for it.
  Entry& entry_for(const Key& key, const Tensor& y, const Tensor& x, const Tensor& w);
  void run_gemm(const Tensor& y, const Tensor& x, const Tensor& w, const Tensor& bias, int pad, Allocator& alloc);

  cudaStream_t stream_;
  LtMatmul& matmul_;
  bool force_gemm_;
  void* handle_ = nullptr;  // cudnnHandle_t, created at the first cuDNN use; opaque so this header needs no cuDNN
  std::unordered_map<Key, std::unique_ptr<Entry>, KeyHash> cache_;
};

}  // namespace paradit::cuda
