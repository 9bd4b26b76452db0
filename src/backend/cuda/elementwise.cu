// Activations, adds, products, axpby and the gated residual add: memory-bound, so each is one pass through the
// strided map kernel with 16-byte accesses, the math in f32.
#include "backend/cuda/dtype_dispatch.h"
#include "backend/cuda/elementwise.h"
#include "backend/cuda/strided_map.cuh"
#include "backend/cuda/vec.cuh"

namespace paradit::cuda {
namespace {

__device__ __forceinline__ float silu_f32(float x) { return x / (1.0f + __expf(-x)); }

__device__ __forceinline__ float gelu_tanh_f32(float x) {
  constexpr float kSqrt2OverPi = 0.7978845608028654f;
  return 0.5f * x * (1.0f + tanhf(kSqrt2OverPi * (x + 0.044715f * x * x * x)));
}

// CLIP's quick_gelu, x·σ(1.702·x); a large negative x gives x/inf = −0, as on the CPU.
__device__ __forceinline__ float quick_gelu_f32(float x) { return x / (1.0f + __expf(-1.702f * x)); }

template <Unary F>
__device__ __forceinline__ float unary_f32(float x) {
  if constexpr (F == Unary::kSilu) return silu_f32(x);
  else if constexpr (F == Unary::kGeluTanh) return gelu_tanh_f32(x);
  else return quick_gelu_f32(x);
}

template <typename T, Unary F>
struct UnaryOp {
  template <int VEC, typename Index>
  __device__ __forceinline__ void apply(char* const* base, const Index* off, Index) const {
    float v[VEC];
    load_f32<VEC>(reinterpret_cast<const T*>(base[1]) + off[1], v);
#pragma unroll
    for (int i = 0; i < VEC; ++i) v[i] = unary_f32<F>(v[i]);
    store_f32<VEC>(reinterpret_cast<T*>(base[0]) + off[0], v);
  }
};

template <typename T>
struct AddOp {
  template <int VEC, typename Index>
  __device__ __forceinline__ void apply(char* const* base, const Index* off, Index) const {
    float a[VEC], b[VEC];
    load_f32<VEC>(reinterpret_cast<const T*>(base[1]) + off[1], a);
    load_f32<VEC>(reinterpret_cast<const T*>(base[2]) + off[2], b);
#pragma unroll
    for (int i = 0; i < VEC; ++i) a[i] += b[i];
    store_f32<VEC>(reinterpret_cast<T*>(base[0]) + off[0], a);
  }
};

template <typename T>
struct MulOp {
  template <int VEC, typename Index>
  __device__ __forceinline__ void apply(char* const* base, const Index* off, Index) const {
    float a[VEC], b[VEC];
    load_f32<VEC>(reinterpret_cast<const T*>(base[1]) + off[1], a);
    load_f32<VEC>(reinterpret_cast<const T*>(base[2]) + off[2], b);
#pragma unroll
    for (int i = 0; i < VEC; ++i) a[i] *= b[i];
    store_f32<VEC>(reinterpret_cast<T*>(base[0]) + off[0], a);
  }
};

// base[0] = y, base[1] = a, base[2] = b, each of its own type.
template <typename Ty, typename Ta, typename Tb>
struct AxpbyOp {
  float alpha, beta;
  template <int VEC, typename Index>
  __device__ __forceinline__ void apply(char* const* base, const Index* off, Index) const {
    float a[VEC], b[VEC];
    load_f32<VEC>(reinterpret_cast<const Ta*>(base[1]) + off[1], a);
    load_f32<VEC>(reinterpret_cast<const Tb*>(base[2]) + off[2], b);
#pragma unroll
    for (int i = 0; i < VEC; ++i) a[i] = alpha * a[i] + beta * b[i];
    store_f32<VEC>(reinterpret_cast<Ty*>(base[0]) + off[0], a);
  }
};

// base[0] = x (read and written), base[1] = y, base[2] = gate (stride 0 along S).
template <typename T>
struct GatedAddOp {
  template <int VEC, typename Index>
  __device__ __forceinline__ void apply(char* const* base, const Index* off, Index) const {
    float x[VEC], y[VEC], g[VEC];
    load_f32<VEC>(reinterpret_cast<const T*>(base[0]) + off[0], x);
    load_f32<VEC>(reinterpret_cast<const T*>(base[1]) + off[1], y);
    load_f32<VEC>(reinterpret_cast<const T*>(base[2]) + off[2], g);
#pragma unroll
    for (int i = 0; i < VEC; ++i) x[i] = fmaf(g[i], y[i], x[i]);
    store_f32<VEC>(reinterpret_cast<T*>(base[0]) + off[0], x);
  }
};

template <typename T>
constexpr int vec_of() {
  return 16 / int(sizeof(T)) > 8 ? 8 : 16 / int(sizeof(T));
}

// Vector width of a mixed-dtype map: 16 bytes of the widest type.
template <typename A, typename B, typename C>
constexpr int vec_of3() {
  constexpr int wide = int(sizeof(A) > sizeof(B) ? (sizeof(A) > sizeof(C) ? sizeof(A) : sizeof(C))
                                                 : (sizeof(B) > sizeof(C) ? sizeof(B) : sizeof(C)));
  return 16 / wide > 8 ? 8 : 16 / wide;
}

}  // namespace

void launch_unary(Unary f, const Tensor& y, const Tensor& x, cudaStream_t stream) {
  const StridedLayout<2> l = make_layout<2>("unary", y.shape(), {y.strides(), x.strides()});
  const int es = int(y.element_size());
  dispatch_float_dtype("unary", y.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (f == Unary::kSilu)
      launch_strided_map<vec_of<T>()>("silu_kernel", l, {y.data(), x.data()}, {es, es}, UnaryOp<T, Unary::kSilu>{},
                                      stream);
    else if (f == Unary::kGeluTanh)
      launch_strided_map<vec_of<T>()>("gelu_tanh_kernel", l, {y.data(), x.data()}, {es, es},
                                      UnaryOp<T, Unary::kGeluTanh>{}, stream);
    else
      launch_strided_map<vec_of<T>()>("quick_gelu_kernel", l, {y.data(), x.data()}, {es, es},
                                      UnaryOp<T, Unary::kQuickGelu>{}, stream);
  });
}

void launch_add(const Tensor& y, const Tensor& a, const Tensor& b, cudaStream_t stream) {
  const StridedLayout<3> l = make_layout<3>("add", y.shape(), {y.strides(), a.strides(), b.strides()});
  const int es = int(y.element_size());
  dispatch_float_dtype("add", y.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    launch_strided_map<vec_of<T>()>("add_kernel", l, {y.data(), a.data(), b.data()}, {es, es, es}, AddOp<T>{},
                                    stream);
  });
}

void launch_mul(const Tensor& y, const Tensor& a, const Tensor& b, cudaStream_t stream) {
  const StridedLayout<3> l = make_layout<3>("mul", y.shape(), {y.strides(), a.strides(), b.strides()});
  const int es = int(y.element_size());
  dispatch_float_dtype("mul", y.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    launch_strided_map<vec_of<T>()>("mul_kernel", l, {y.data(), a.data(), b.data()}, {es, es, es}, MulOp<T>{},
                                    stream);
  });
}

void launch_axpby(const Tensor& y, const Tensor& a, float alpha, const Tensor& b, float beta, cudaStream_t stream) {
  const StridedLayout<3> l = make_layout<3>("axpby", y.shape(), {y.strides(), a.strides(), b.strides()});
  const std::array<int, 3> es{int(y.element_size()), int(a.element_size()), int(b.element_size())};
  dispatch_real_dtype("axpby", y.dtype(), [&](auto ty_tag) {
    using Ty = typename decltype(ty_tag)::type;
    dispatch_real_dtype("axpby", a.dtype(), [&](auto ta_tag) {
      using Ta = typename decltype(ta_tag)::type;
      dispatch_real_dtype("axpby", b.dtype(), [&](auto tb_tag) {
        using Tb = typename decltype(tb_tag)::type;
        launch_strided_map<vec_of3<Ty, Ta, Tb>()>("axpby_kernel", l, {y.data(), a.data(), b.data()}, es,
                                                  AxpbyOp<Ty, Ta, Tb>{alpha, beta}, stream);
      });
    });
  });
}

void launch_gated_add(const Tensor& x, const Tensor& y, const Tensor& gate, cudaStream_t stream) {
  // gate [B, D] seen as [B, S, D] with stride 0 along S.
  const Shape gate_strides{gate.stride(0), 0, gate.stride(1)};
  const StridedLayout<3> l = make_layout<3>("gated_add", x.shape(), {x.strides(), y.strides(), gate_strides});
  const int es = int(x.element_size());
  dispatch_float_dtype("gated_add", x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    launch_strided_map<vec_of<T>()>("gated_add_kernel", l, {x.data(), y.data(), gate.data()}, {es, es, es},
                                    GatedAddOp<T>{}, stream);
  });
}

}  // namespace paradit::cuda
