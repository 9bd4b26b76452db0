#include "backend/cuda/cuda_check.h"

namespace paradit::cuda {

StatusCode status_of(cudaError_t err) {
  switch (err) {
    case cudaErrorMemoryAllocation:
      return StatusCode::kOutOfMemory;
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
    case cudaErrorInvalidDevice:
    case cudaErrorDevicesUnavailable:
    case cudaErrorNoKernelImageForDevice:
    case cudaErrorUnsupportedPtxVersion:
    case cudaErrorSystemDriverMismatch:
    case cudaErrorCompatNotSupportedOnDevice:
    case cudaErrorInitializationError:
      return StatusCode::kUnavailable;
    default:
      return StatusCode::kInternal;
  }
}

void throw_cuda(cudaError_t err, const char* call, const char* file, int line) {
  throw Error(status_of(err), detail::concat("CUDA error in ", call, ": ", cudaGetErrorName(err), " (",
                                             cudaGetErrorString(err), ") at ", file, ":", line));
}

void throw_cublas(cublasStatus_t st, const char* call, const char* file, int line) {
  const StatusCode code = st == CUBLAS_STATUS_ALLOC_FAILED     ? StatusCode::kOutOfMemory
                          : st == CUBLAS_STATUS_NOT_SUPPORTED  ? StatusCode::kUnimplemented
                          : st == CUBLAS_STATUS_NOT_INITIALIZED ? StatusCode::kUnavailable
                                                                : StatusCode::kInternal;
  throw Error(code, detail::concat("cuBLAS error in ", call, ": ", cublasLtGetStatusName(st), " (",
                                   cublasLtGetStatusString(st), ") at ", file, ":", line));
}

void throw_cudnn(cudnnStatus_t st, const char* call, const char* file, int line) {
  // cuDNN 9 groups its codes by thousands: 1xxx uninitialised/library loading, 2xxx bad parameter, 3xxx not
  // supported, 4xxx internal (4003/4004: allocation), 5xxx execution.
  const int category = int(st) / 1000 * 1000;
  const StatusCode code =
      (st == CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED || st == CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED)
          ? StatusCode::kOutOfMemory
      : category == 3000 ? StatusCode::kUnimplemented
      : category == 1000 ? StatusCode::kUnavailable
      : category == 2000 ? StatusCode::kInvalidArgument
                         : StatusCode::kInternal;
  char last[512] = {0};
  cudnnGetLastErrorString(last, sizeof(last));
  throw Error(code, detail::concat("cuDNN error in ", call, ": ", cudnnGetErrorString(st), " (", int(st), ")",
                                   last[0] ? " — " : "", last, " at ", file, ":", line));
}

}  // namespace paradit::cuda
