// 8-bit conversion of decoded images, on the backend that holds them.
#include "models/vae/vae_postprocess.h"

#include <cstdint>
#include <memory>

#include "paradit/core/status.h"

namespace paradit::vae {

std::vector<Rgb8Image> to_rgb8(Backend& be, const Tensor& y) {
  PD_CHECK(y.dim() == 4 && y.is_contiguous());
  // A host tensor on a device backend (the tiled decode's): the host converts it.
  std::unique_ptr<Backend> host;
  Backend& converter = y.device() == be.device() ? be : *(host = create_cpu_backend());
  std::vector<Rgb8Image> images;
  for (int64_t n = 0; n < y.size(0); ++n) {
    Rgb8Image img;
    img.height = y.size(1);
    img.width = y.size(2);
    img.channels = y.size(3);
    img.pixels.resize(size_t(img.height * img.width * img.channels));
    converter.to_rgb8(y.select(0, n), img.pixels.data());
    images.push_back(std::move(img));
  }
  return images;
}

}  // namespace paradit::vae
