// Fused attention through cuDNN's SDPA graph (cudnn_frontend), for Backend::attention.
//
// The graph for a (shape, strides, scale, with/without LSE) combination is built once — validation, heuristic
// engine choice, plan compilation: milliseconds to a second — and cached; a later call with the same key only
// binds pointers and executes. q/k/v/out are passed to cuDNN with their real strides ([B, H, S, d] dims over
// the [B, S, H, d] views), so views into a packed QKV buffer cost no copy.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <unordered_map>

#include "paradit/core/allocator.h"
#include "paradit/core/tensor.h"

namespace paradit::cuda {

class Sdpa {
 public:
  explicit Sdpa(cudaStream_t stream);
  ~Sdpa();
  Sdpa(const Sdpa&) = delete;
  Sdpa& operator=(const Sdpa&) = delete;

  // Whether the layout is one cuDNN's fused kernels take: 16-byte aligned q/k/v/out with strides that are
  // multiples of 8 elements, and a head dim that is a multiple of 8, at most 256.
  static bool eligible(const Tensor& out, const Tensor& q, const Tensor& k, const Tensor& v);

  // out = softmax(scale·q·kᵀ)·v; lse (f32 [B, H, Sq], natural log) when defined. Shapes are validated by the
  // caller. Returns false, having enqueued nothing, when the layout is not eligible or cuDNN has no engine for
  // the configuration (the refusal is cached: asking again costs a lookup); the caller then takes the GEMM
  // path (attention_fallback.h). Other failures throw. Workspace comes from `alloc`.
  bool run(const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v, float scale,
           Allocator& alloc);

 private:
  struct Key {
    int64_t b, h, sq, skv, d;
    int64_t q[3], k[3], v[3], o[3], l[3];  // batch, sequence, head strides (lse: batch, head, sequence)
    uint32_t scale_bits;
    bool lse;
    bool operator==(const Key& o) const;
  };
  struct KeyHash {
    size_t operator()(const Key& k) const;
  };
  struct Entry;

  cudaStream_t stream_;
  void* handle_ = nullptr;  // cudnnHandle_t, kept opaque so this header needs no cuDNN
  std::unordered_map<Key, std::unique_ptr<Entry>, KeyHash> cache_;
};

}  // namespace paradit::cuda
