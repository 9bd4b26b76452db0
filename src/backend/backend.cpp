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

void Backend::qk_norm_rope(const Tensor& q, const Tensor& k, const Tensor& q_weight, const Tensor& k_weight,
                           const Tensor& cos, const Tensor& sin, float eps) {
  rms_norm_rope(q, q, q_weight, cos, sin, eps);
  rms_norm_rope(k, k, k_weight, cos, sin, eps);
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

void Backend::check_lse_merge(const Tensor& out, const Tensor& lse, const std::vector<Tensor>& block_outs,
                              const std::vector<Tensor>& block_lses) {
  const size_t n = block_outs.size();
  PD_REQUIRE(n >= 1 && n <= size_t(kMaxLseMergeBlocks) && block_lses.size() == n, "lse_merge: ", n,
             " block outputs and ", block_lses.size(), " block lses; 1 to ", kMaxLseMergeBlocks, " of each");
  const auto check = [&](const char* name, const Tensor& t) {
    PD_REQUIRE(t.defined() && t.dim() >= 1 && t.stride(-1) == 1, "lse_merge: ", name,
               " must be defined with a contiguous last dimension, got ", t.defined() ? t.desc() : "none");
    PD_REQUIRE(t.device() == device(), "lse_merge: ", name, " ", t.desc(), " is not on ", device().str());
  };
  check("out", out);
  if (lse.defined()) check("lse", lse);
  PD_REQUIRE(out.dim() == 4, "lse_merge: out ", out.desc(), " must be [B, S, H, d]");
  const Shape lse_shape = {out.size(0), out.size(2), out.size(1)};
  const auto float_or_compute = [&](const Tensor& t) { return t.dtype() == DType::kF32 || t.dtype() == compute_dtype(); };
  PD_REQUIRE(float_or_compute(out), "lse_merge: out ", out.desc(), " must be f32 or ", dtype_name(compute_dtype()));
  PD_REQUIRE(!lse.defined() || (lse.dtype() == DType::kF32 && lse.shape() == lse_shape), "lse_merge: lse ",
             lse.desc(), " must be f32", shape_str(lse_shape));
  for (size_t j = 0; j < n; ++j) {
    const Tensor &bo = block_outs[j], &bl = block_lses[j];
    check("a block output", bo);
    check("a block lse", bl);
    PD_REQUIRE(bo.shape() == out.shape() && bo.strides() == block_outs[0].strides() &&
                   bo.dtype() == block_outs[0].dtype() && float_or_compute(bo),
               "lse_merge: block output ", j, " ", bo.desc(), " must be ", shape_str(out.shape()), " in f32 or ",
               dtype_name(compute_dtype()), " with the dtype and strides of block 0 (", block_outs[0].desc(), ")");
    PD_REQUIRE(bl.dtype() == DType::kF32 && bl.shape() == lse_shape && bl.strides() == block_lses[0].strides(),
               "lse_merge: block lse ", j, " ", bl.desc(), " must be f32", shape_str(lse_shape),
               " with the strides of block 0's");
  }
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
