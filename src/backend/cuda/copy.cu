// Copies with dtype conversion, constant fills and the deterministic random fill, all through the strided map
// kernel (strided_map.cuh). A plain contiguous same-dtype copy goes to cudaMemcpyAsync instead.
#include <string>

#include "backend/cuda/copy.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/dtype_dispatch.h"
#include "backend/cuda/strided_map.cuh"
#include "backend/cuda/vec.cuh"
#include "paradit/core/random.h"

namespace paradit::cuda {
namespace {

// Vector width: 16 bytes of the wider of the two types, at most 8 elements.
template <typename A, typename B>
constexpr int vec_for() {
  constexpr int wide = int(sizeof(A) > sizeof(B) ? sizeof(A) : sizeof(B));
  return 16 / wide > 8 ? 8 : 16 / wide;
}

template <typename To, typename Ti>
struct CopyOp {
  template <int VEC, typename Index>
  __device__ __forceinline__ void apply(char* const* base, const Index* off, Index) const {
    float v[VEC];
    load_f32<VEC>(reinterpret_cast<const Ti*>(base[1]) + off[1], v);
    store_f32<VEC>(reinterpret_cast<To*>(base[0]) + off[0], v);
  }
};

template <typename To>
struct FillOp {
  float value;
  template <int VEC, typename Index>
  __device__ __forceinline__ void apply(char* const* base, const Index* off, Index) const {
    float v[VEC];
#pragma unroll
    for (int i = 0; i < VEC; ++i) v[i] = value;
    store_f32<VEC>(reinterpret_cast<To*>(base[0]) + off[0], v);
  }
};

template <typename To>
struct RandomOp {
  uint64_t seed;
  float stddev;
  template <int VEC, typename Index>
  __device__ __forceinline__ void apply(char* const* base, const Index* off, Index elem) const {
    float v[VEC];
#pragma unroll
    for (int i = 0; i < VEC; ++i) v[i] = random_uniform_value(seed, uint64_t(elem) + uint64_t(i), stddev);
    store_f32<VEC>(reinterpret_cast<To*>(base[0]) + off[0], v);
  }
};

__global__ void probe_kernel(int* p) {
  if (p) *p = 0;
}

}  // namespace

void launch_copy(const Tensor& dst, const Tensor& src, cudaStream_t stream) {
  const StridedLayout<2> l = make_layout<2>("copy", dst.shape(), {dst.strides(), src.strides()});
  if (l.ndim == 0) return;
  if (dst.dtype() == src.dtype() && l.ndim == 1 && l.stride[0][0] == 1 && l.stride[1][0] == 1) {
    PD_CUDA_CHECK(cudaMemcpyAsync(dst.data(), src.data(), size_t(l.numel) * dst.element_size(),
                                  cudaMemcpyDeviceToDevice, stream));
    return;
  }
  const std::array<void*, 2> ptr{dst.data(), src.data()};
  const std::array<int, 2> es{int(dst.element_size()), int(src.element_size())};
  dispatch_dtype("copy", dst.dtype(), [&](auto to_tag) {
    using To = typename decltype(to_tag)::type;
    dispatch_dtype("copy", src.dtype(), [&](auto ti_tag) {
      using Ti = typename decltype(ti_tag)::type;
      launch_strided_map<vec_for<To, Ti>()>("copy_kernel", l, ptr, es, CopyOp<To, Ti>{}, stream);
    });
  });
}

void launch_fill(const Tensor& dst, float value, cudaStream_t stream) {
  const StridedLayout<1> l = make_layout<1>("fill", dst.shape(), {dst.strides()});
  dispatch_dtype("fill", dst.dtype(), [&](auto tag) {
    using To = typename decltype(tag)::type;
    launch_strided_map<vec_for<To, To>()>("fill_kernel", l, {dst.data()}, {int(dst.element_size())},
                                          FillOp<To>{value}, stream);
  });
}

void launch_fill_random(const Tensor& dst, uint64_t seed, float stddev, cudaStream_t stream) {
  const StridedLayout<1> l = make_layout<1>("fill_random", dst.shape(), {dst.strides()});
  dispatch_dtype("fill_random", dst.dtype(), [&](auto tag) {
    using To = typename decltype(tag)::type;
    // 4 elements per thread at most: the generator's 64-bit multiplies, not memory, bound this kernel.
    launch_strided_map<4>("fill_random_kernel", l, {dst.data()}, {int(dst.element_size())},
                          RandomOp<To>{seed, stddev}, stream);
  });
}

bool kernels_runnable_on_current_device(std::string* why) {
  cudaFuncAttributes attr{};
  const cudaError_t err = cudaFuncGetAttributes(&attr, probe_kernel);
  if (err == cudaSuccess) return true;
  (void)cudaGetLastError();  // clear it: the caller reports, nothing else should see it
  if (why) {
    int dev = 0, major = 0, minor = 0;
    (void)cudaGetDevice(&dev);
    (void)cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
    (void)cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev);
    *why = detail::concat("this paradit has no GPU code for compute capability ", major, ".", minor, " (",
                          cudaGetErrorString(err), "); rebuild with CMAKE_CUDA_ARCHITECTURES including ", major,
                          minor);
  }
  return false;
}

}  // namespace paradit::cuda
