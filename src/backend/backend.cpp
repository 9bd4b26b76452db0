#include "paradit/backend/backend.h"

#include <utility>

#include "paradit/core/log.h"
#include "paradit/core/status.h"

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

void Backend::check_conv2d_shapes(const Tensor& y, const Tensor& x, const Tensor& w, int pad) {
  const char* op = "conv2d";
  PD_REQUIRE(x.dim() == 4, op, ": x ", x.desc(), " must be [B, H, W, Cin]");
  PD_REQUIRE(w.dim() == 4, op, ": w ", w.desc(), " must be [Cout, kh, kw, Cin]");
  const int64_t B = x.size(0), H = x.size(1), W = x.size(2), Cin = x.size(3);
  const int64_t Cout = w.size(0), kh = w.size(1), kw = w.size(2);
  PD_REQUIRE(w.size(3) == Cin, op, ": w ", w.desc(), " has Cin = ", w.size(3), " but x ", x.desc(), " has Cin = ",
             Cin);
  PD_REQUIRE(kh >= 1 && kw >= 1, op, ": w ", w.desc(), " has an empty kernel");
  PD_REQUIRE(pad >= 0, op, ": pad must be >= 0, got ", pad);
  PD_REQUIRE(H + 2 * pad >= kh && W + 2 * pad >= kw, op, ": the ", kh, "×", kw, " kernel of w ", w.desc(),
             " is larger than x ", x.desc(), " padded by ", pad);
  const Shape out = {B, H + 2 * pad - kh + 1, W + 2 * pad - kw + 1, Cout};
  PD_REQUIRE(y.shape() == out, op, ": y is ", y.desc(), ", expected ", shape_str(out), " for x ", x.desc(), ", w ",
             w.desc(), " and pad ", pad);
}

void Backend::check_lse_merge(const Tensor& out, const Tensor& lse, const Tensor& block_out,
                              const Tensor& block_lse) {
  for (auto [name, t] : {std::pair{"out", &out}, std::pair{"lse", &lse}, std::pair{"block_out", &block_out},
                         std::pair{"block_lse", &block_lse}}) {
    PD_REQUIRE(t->defined() && t->dim() >= 1 && t->stride(-1) == 1, "lse_merge: ", name,
               " must be defined with a contiguous last dimension, got ", t->defined() ? t->desc() : "none");
    PD_REQUIRE(t->device() == device(), "lse_merge: ", name, " ", t->desc(), " is not on ", device().str());
  }
  PD_REQUIRE(out.dim() == 4 && block_out.shape() == out.shape(), "lse_merge: out ", out.desc(), " and block_out ",
             block_out.desc(), " must be the same [B, S, H, d]");
  const Shape lse_shape = {out.size(0), out.size(2), out.size(1)};
  PD_REQUIRE(lse.shape() == lse_shape && block_lse.shape() == lse_shape, "lse_merge: lse ", lse.desc(),
             " and block_lse ", block_lse.desc(), " must be f32", shape_str(lse_shape));
  PD_REQUIRE(out.dtype() == DType::kF32 && lse.dtype() == DType::kF32 && block_lse.dtype() == DType::kF32,
             "lse_merge: the accumulators and block_lse are f32, got ", out.desc(), ", ", lse.desc(), ", ",
             block_lse.desc());
  PD_REQUIRE(block_out.dtype() == DType::kF32 || block_out.dtype() == compute_dtype(), "lse_merge: block_out ",
             block_out.desc(), " must be f32 or ", dtype_name(compute_dtype()));
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
