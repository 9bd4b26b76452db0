#include "paradit/backend/backend.h"

#include "paradit/core/log.h"

namespace paradit {

Tensor Backend::upload(const Tensor& host, DType dtype) {
  Tensor t = empty(host.shape(), dtype);
  copy(t, host);
  return t;
}

Tensor Backend::download_f32(const Tensor& t) {
  Tensor host = Tensor::empty(t.shape(), DType::kF32, cpu_allocator());
  copy(host, t);
  synchronize();
  return host;
}

}  // namespace paradit

namespace paradit {

std::unique_ptr<Backend> create_backend(const std::string& device) {
  if (device == "cpu") return create_cpu_backend();
  if (device == "auto") {
    std::string why;
    if (cuda_device_count(&why) > 0) return create_cuda_backend(0);
    PD_LOG(kWarn, "no usable GPU (", why, "): running on the CPU backend");
    return create_cpu_backend();
  }
  if (device == "cuda") return create_cuda_backend(0);
  if (device.rfind("cuda:", 0) == 0) {
    const std::string idx = device.substr(5);
    PD_REQUIRE(!idx.empty() && idx.find_first_not_of("0123456789") == std::string::npos, "bad device '", device,
               "': expected cpu, cuda, cuda:N or auto");
    return create_cuda_backend(std::stoi(idx));
  }
  PD_THROW(kInvalidArgument, "bad device '", device, "': expected cpu, cuda, cuda:N or auto");
}

}  // namespace paradit
