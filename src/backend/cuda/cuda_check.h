// Turning CUDA, cuBLAS and cuDNN return codes into paradit::Error.
//
// Every runtime/library call of the CUDA backend goes through one of these macros, so a failure surfaces as an
// exception naming the call, the library's own error string and where it happened — never as an abort, and
// never silently: a kernel launch is followed by PD_CUDA_CHECK_LAUNCH, which reports launch-configuration
// errors at once (errors inside a kernel surface at the next synchronising call, see Backend::synchronize).
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include "paradit/core/status.h"

namespace paradit::cuda {

// Maps a CUDA error to our status code: memory exhaustion → kOutOfMemory, a missing/unusable device or
// driver → kUnavailable, anything else → kInternal.
StatusCode status_of(cudaError_t err);

[[noreturn]] void throw_cuda(cudaError_t err, const char* call, const char* file, int line);
[[noreturn]] void throw_cublas(cublasStatus_t st, const char* call, const char* file, int line);
[[noreturn]] void throw_cudnn(cudnnStatus_t st, const char* call, const char* file, int line);

}  // namespace paradit::cuda

#define PD_CUDA_CHECK(expr)                                                              \
  do {                                                                                   \
    const cudaError_t pd_cuda_err_ = (expr);                                             \
    if (pd_cuda_err_ != cudaSuccess) ::paradit::cuda::throw_cuda(pd_cuda_err_, #expr, __FILE__, __LINE__); \
  } while (0)

// After a <<<...>>> launch: a bad configuration (too many threads, too much shared memory, no kernel image for
// this GPU) is reported here, naming the kernel.
#define PD_CUDA_CHECK_LAUNCH(kernel_name)                                                          \
  do {                                                                                             \
    const cudaError_t pd_cuda_err_ = cudaGetLastError();                                           \
    if (pd_cuda_err_ != cudaSuccess)                                                               \
      ::paradit::cuda::throw_cuda(pd_cuda_err_, "launch of " kernel_name, __FILE__, __LINE__);     \
  } while (0)

#define PD_CUBLAS_CHECK(expr)                                                            \
  do {                                                                                   \
    const cublasStatus_t pd_cublas_st_ = (expr);                                         \
    if (pd_cublas_st_ != CUBLAS_STATUS_SUCCESS)                                          \
      ::paradit::cuda::throw_cublas(pd_cublas_st_, #expr, __FILE__, __LINE__);           \
  } while (0)

#define PD_CUDNN_CHECK(expr)                                                             \
  do {                                                                                   \
    const cudnnStatus_t pd_cudnn_st_ = (expr);                                           \
    if (pd_cudnn_st_ != CUDNN_STATUS_SUCCESS)                                            \
      ::paradit::cuda::throw_cudnn(pd_cudnn_st_, #expr, __FILE__, __LINE__);             \
  } while (0)
