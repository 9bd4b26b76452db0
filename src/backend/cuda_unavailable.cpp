// Built only without the CUDA toolkit: the CUDA backend reports itself unavailable.
#include "paradit/backend/backend.h"
#include "paradit/core/status.h"

namespace paradit {

std::unique_ptr<Backend> create_cuda_backend(int) {
  PD_THROW(kUnavailable, "this paradit was built without CUDA (configure with the CUDA toolkit to get it)");
}

int cuda_device_count(std::string* why) {
  if (why) *why = "built without CUDA";
  return 0;
}

}  // namespace paradit
