// Lifecycle of the CUDA backend (device checks, stream, allocator, library handles), the factory functions,
// and the data-movement ops: copy between host and device or within the device, fill, fill_random.
#include <cstdlib>

#include "backend/cuda/copy.h"
#include "backend/cuda/cuda_backend_impl.h"
#include "backend/cuda/cuda_check.h"
#include "paradit/core/log.h"

namespace paradit {

namespace cuda {

DeviceGuard::DeviceGuard(int index) : index_(index) {
  PD_CUDA_CHECK(cudaGetDevice(&prev_));
  if (prev_ != index_) PD_CUDA_CHECK(cudaSetDevice(index_));
}

DeviceGuard::~DeviceGuard() {
  if (prev_ >= 0 && prev_ != index_) (void)cudaSetDevice(prev_);
}

namespace {

// cudaMalloc/cudaFree for the caching allocator: null on exhaustion (the allocator then frees its cache and
// retries, or throws kOutOfMemory with the sizes).
class DeviceRawAllocator final : public RawAllocator {
 public:
  explicit DeviceRawAllocator(int index) : index_(index) {}
  Device device() const override { return Device::cuda(index_); }

  void* raw_allocate(size_t bytes) override {
    DeviceGuard guard(index_);
    void* p = nullptr;
    const cudaError_t err = cudaMalloc(&p, bytes);
    if (err == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();  // not sticky, but cleared so no later check reports it again
      return nullptr;
    }
    if (err != cudaSuccess) throw_cuda(err, "cudaMalloc", __FILE__, __LINE__);
    return p;
  }

  // Called from destructors too, so it reports instead of throwing.
  void raw_free(void* ptr) override {
    int prev = -1;
    (void)cudaGetDevice(&prev);
    if (prev != index_) (void)cudaSetDevice(index_);
    const cudaError_t err = cudaFree(ptr);
    if (err != cudaSuccess) {
      (void)cudaGetLastError();
      PD_LOG(kWarn, "cudaFree on cuda:", index_, " failed: ", cudaGetErrorString(err));
    }
    if (prev >= 0 && prev != index_) (void)cudaSetDevice(prev);
  }

 private:
  int index_;
};

constexpr size_t kMatmulWorkspace = size_t(32) << 20;  // what cuBLAS asks for on Hopper

}  // namespace
}  // namespace cuda

CudaBackendImpl::CudaBackendImpl(int index) : index_(index) {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
    PD_THROW(kUnavailable, "no usable CUDA driver/GPU: ", cudaGetErrorString(err));
  }
  if (index < 0 || index >= count)
    PD_THROW(kUnavailable, "GPU index ", index, " is out of range: this machine has ", count, " CUDA GPU(s)");
  cudaDeviceProp prop{};
  PD_CUDA_CHECK(cudaGetDeviceProperties(&prop, index));
  if (prop.major < 8)
    PD_THROW(kUnavailable, "GPU ", index, " (", prop.name, ") has compute capability ", prop.major, ".", prop.minor,
             "; the CUDA backend needs 8.0 or newer (bf16 tensor cores)");
  name_ = detail::concat("cuda:", index, " ", prop.name);
  const auto env_is = [](const char* name, const char* value) {
    const char* v = std::getenv(name);
    return v && std::string(v) == value;
  };
  force_gemm_attention_ = env_is("PARADIT_CUDA_ATTENTION", "gemm");
  force_gemm_conv_ = env_is("PARADIT_CUDA_CONV", "gemm");
  cuda::DeviceGuard guard(index_);
  std::string why;
  if (!cuda::kernels_runnable_on_current_device(&why)) PD_THROW(kUnavailable, "GPU ", index, ": ", why);
  try {
    PD_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    alloc_ = std::make_unique<CachingAllocator>(std::make_unique<cuda::DeviceRawAllocator>(index_));
    matmul_ = std::make_unique<cuda::LtMatmul>(*alloc_, cuda::kMatmulWorkspace, !env_is("PARADIT_GEMM_AUTOTUNE", "0"));
  } catch (...) {
    release();
    throw;
  }
}

CudaBackendImpl::~CudaBackendImpl() { release(); }

void CudaBackendImpl::release() noexcept {
  int prev = -1;
  (void)cudaGetDevice(&prev);
  if (prev != index_) (void)cudaSetDevice(index_);
  if (stream_) {
    const cudaError_t err = cudaStreamSynchronize(stream_);
    if (err != cudaSuccess) {
      (void)cudaGetLastError();
      PD_LOG(kWarn, name_, ": pending work failed while the backend was destroyed: ", cudaGetErrorString(err));
    }
  }
  try {
    conv_.reset();  // refers to matmul_
    gemm_attention_.reset();
    sdpa_.reset();
    matmul_.reset();
    alloc_.reset();  // gives cached blocks back; blocks of tensors still alive stay allocated
  } catch (const std::exception& e) {
    PD_LOG(kWarn, name_, ": error while releasing the backend: ", e.what());
  }
  if (stream_) {
    (void)cudaStreamDestroy(stream_);
    stream_ = nullptr;
  }
  if (prev >= 0 && prev != index_) (void)cudaSetDevice(prev);
}

void CudaBackendImpl::synchronize() {
  cuda::DeviceGuard guard(index_);
  PD_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void CudaBackendImpl::require_here(const char* op, const char* name, const Tensor& t) const {
  PD_REQUIRE(t.defined(), op, ": ", name, " is undefined");
  PD_REQUIRE(t.device() == device(), op, ": ", name, " ", t.desc(), " is not on ", device().str());
}

void CudaBackendImpl::copy(const Tensor& dst, const Tensor& src) {
  PD_REQUIRE(dst.defined() && src.defined(), "copy: undefined tensor");
  PD_REQUIRE(dst.shape() == src.shape(), "copy: dst ", dst.desc(), " and src ", src.desc(), " differ in shape");
  const bool dst_here = dst.device() == device(), src_here = src.device() == device();
  PD_REQUIRE((dst_here || dst.device().is_cpu()) && (src_here || src.device().is_cpu()) && (dst_here || src_here),
             "copy: dst ", dst.desc(), " and src ", src.desc(), " must be on ", device().str(),
             " or the host, at least one on ", device().str());
  PD_REQUIRE(dst.dtype() != DType::kF8E4M3 || src.dtype() == DType::kF8E4M3,
             "copy: conversion to fp8 e4m3 is not supported (", src.desc(), " -> ", dst.desc(), ")");
  if (dst.numel() == 0) return;
  cuda::DeviceGuard guard(index_);
  if (dst_here && src_here)
    cuda::launch_copy(dst, src, stream_);
  else if (dst_here)
    copy_host_to_device(dst, src);
  else
    copy_device_to_host(dst, src);
}

void CudaBackendImpl::copy_host_to_device(const Tensor& dst, const Tensor& src) {
  PD_REQUIRE(src.is_contiguous(), "copy: the host side must be contiguous, got src ", src.desc(), " strides ",
             shape_str(src.strides()));
  if (dst.is_contiguous() && dst.dtype() == src.dtype()) {
    PD_CUDA_CHECK(cudaMemcpyAsync(dst.data(), src.data(), src.nbytes(), cudaMemcpyHostToDevice, stream_));
    return;
  }
  // Raw upload in the host's dtype, then convert (and scatter into dst's strides) on the device.
  Tensor staged = Tensor::empty(src.shape(), src.dtype(), *alloc_);
  PD_CUDA_CHECK(cudaMemcpyAsync(staged.data(), src.data(), src.nbytes(), cudaMemcpyHostToDevice, stream_));
  cuda::launch_copy(dst, staged, stream_);
}

void CudaBackendImpl::copy_device_to_host(const Tensor& dst, const Tensor& src) {
  PD_REQUIRE(dst.is_contiguous(), "copy: the host side must be contiguous, got dst ", dst.desc(), " strides ",
             shape_str(dst.strides()));
  if (src.is_contiguous() && dst.dtype() == src.dtype()) {
    PD_CUDA_CHECK(cudaMemcpyAsync(dst.data(), src.data(), dst.nbytes(), cudaMemcpyDeviceToHost, stream_));
    return;
  }
  // Gather and convert on the device into dst's dtype, then one contiguous download.
  Tensor staged = Tensor::empty(dst.shape(), dst.dtype(), *alloc_);
  cuda::launch_copy(staged, src, stream_);
  PD_CUDA_CHECK(cudaMemcpyAsync(dst.data(), staged.data(), dst.nbytes(), cudaMemcpyDeviceToHost, stream_));
}

void CudaBackendImpl::fill(const Tensor& dst, float value) {
  require_here("fill", "dst", dst);
  if (dst.numel() == 0) return;
  PD_REQUIRE(dst.dtype() != DType::kF8E4M3, "fill: fp8 e4m3 destinations are not supported (", dst.desc(), ")");
  cuda::DeviceGuard guard(index_);
  cuda::launch_fill(dst, value, stream_);
}

void CudaBackendImpl::fill_random(const Tensor& dst, uint64_t seed, float stddev) {
  require_here("fill_random", "dst", dst);
  if (dst.numel() == 0) return;
  PD_REQUIRE(dst.dtype() != DType::kF8E4M3, "fill_random: fp8 e4m3 destinations are not supported (", dst.desc(),
             ")");
  cuda::DeviceGuard guard(index_);
  cuda::launch_fill_random(dst, seed, stddev, stream_);
}

std::unique_ptr<Backend> create_cuda_backend(int index) { return std::make_unique<CudaBackendImpl>(index); }

int cuda_device_count(std::string* why) {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
    if (why) *why = detail::concat("CUDA is unavailable: ", cudaGetErrorString(err), " (", cudaGetErrorName(err), ")");
    return 0;
  }
  if (count == 0) {
    if (why) *why = "no CUDA GPU found";
    return 0;
  }
  // GPUs below compute capability 8.0 (no bf16 tensor cores) are not counted.
  int usable = 0;
  std::string skipped;
  for (int i = 0; i < count; ++i) {
    int major = 0, minor = 0;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, i) != cudaSuccess ||
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, i) != cudaSuccess) {
      (void)cudaGetLastError();
      continue;
    }
    if (major >= 8)
      ++usable;
    else
      skipped += detail::concat(skipped.empty() ? "" : ", ", "GPU ", i, " has compute capability ", major, ".", minor);
  }
  if (usable == 0 && why) *why = skipped + " (the CUDA backend needs 8.0 or newer)";
  return usable;
}

}  // namespace paradit
