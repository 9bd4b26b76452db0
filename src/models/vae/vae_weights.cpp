// Reading, converting and uploading the decoder's weights, then binding them to the block structure.
#include "models/vae/vae_weights.h"

#include <cmath>
#include <cstring>
#include <map>

#include "paradit/core/random.h"
#include "paradit/core/status.h"

namespace paradit::vae {

namespace {

class Binder {
 public:
  Binder(Backend& backend, std::map<std::string, Tensor> host) : backend_(backend), host_(std::move(host)) {}

  Tensor tensor(const std::string& name) {
    auto it = host_.find(name);
    PD_CHECK(it != host_.end(), "decoder_tensors() lists no tensor ", name);
    Tensor t = backend_.upload(it->second, backend_.compute_dtype());
    bytes += t.nbytes();
    return t;
  }
  Conv conv(const std::string& p) { return {tensor(p + ".weight"), tensor(p + ".bias")}; }
  Linear linear(const std::string& p) { return {tensor(p + ".weight"), tensor(p + ".bias")}; }
  Norm norm(const std::string& p) { return {tensor(p + ".weight"), tensor(p + ".bias")}; }
  Resnet resnet(const std::string& p) {
    Resnet r{norm(p + ".norm1"), conv(p + ".conv1"), norm(p + ".norm2"), conv(p + ".conv2"), {}};
    if (host_.count(p + ".conv_shortcut.weight")) r.shortcut = linear(p + ".conv_shortcut");
    return r;
  }
  // to_q, to_k, to_v stacked into one [3C, C] projection (and its [3C] bias), so one GEMM makes all three.
  Linear fused_qkv(const std::string& p) {
    const char* parts[] = {".to_q", ".to_k", ".to_v"};
    Tensor w, b;
    for (int part = 0; part < 3; ++part) {
      const Tensor& pw = host_.at(p + parts[part] + ".weight");
      const Tensor& pb = host_.at(p + parts[part] + ".bias");
      const int64_t c = pw.size(0);
      if (!w.defined()) {
        w = Tensor::empty({3 * c, pw.size(1)}, DType::kF32, cpu_allocator());
        b = Tensor::empty({3 * c}, DType::kF32, cpu_allocator());
      }
      std::memcpy(w.data_as<float>() + part * pw.numel(), pw.data(), pw.nbytes());
      std::memcpy(b.data_as<float>() + part * c, pb.data(), pb.nbytes());
    }
    Linear l{backend_.upload(w, backend_.compute_dtype()), backend_.upload(b, backend_.compute_dtype())};
    bytes += l.w.nbytes() + l.b.nbytes();
    return l;
  }

  size_t bytes = 0;

 private:
  Backend& backend_;
  std::map<std::string, Tensor> host_;
};

// Uploads the host tensors (internal layout, f32, by diffusers name) and binds them to the block structure.
VaeWeights bind_weights(Backend& backend, const VaeConfig& c, std::map<std::string, Tensor> host) {
  Binder t(backend, std::move(host));

  VaeWeights w;
  if (c.use_post_quant_conv) w.post_quant = t.linear("post_quant_conv");
  w.conv_in = t.conv("decoder.conv_in");
  w.mid_resnet0 = t.resnet("decoder.mid_block.resnets.0");
  if (c.mid_block_add_attention) {
    const std::string a = "decoder.mid_block.attentions.0";
    w.mid_attention = {t.norm(a + ".group_norm"), t.fused_qkv(a), t.linear(a + ".to_out.0")};
  }
  w.mid_resnet1 = t.resnet("decoder.mid_block.resnets.1");
  const int n = int(c.block_out_channels.size());
  for (int i = 0; i < n; ++i) {
    const std::string p = "decoder.up_blocks." + std::to_string(i);
    UpBlock up;
    for (int j = 0; j <= c.layers_per_block; ++j) up.resnets.push_back(t.resnet(p + ".resnets." + std::to_string(j)));
    if (i + 1 < n) up.upsample = t.conv(p + ".upsamplers.0.conv");
    w.up_blocks.push_back(std::move(up));
  }
  w.norm_out = t.norm("decoder.conv_norm_out");
  w.conv_out = t.conv("decoder.conv_out");
  w.bytes = t.bytes;
  return w;
}

// A tensor's shape in the internal layout that read_tensor produces (see VaeSource).
Shape internal_shape(const TensorSpec& spec) {
  const Shape& s = spec.shape;
  switch (spec.kind) {
    case TensorKind::kConv3x3: return {s[0], s[2], s[3], s[1]};
    case TensorKind::kConv1x1: return {s[0], s[1]};
    case TensorKind::kAttnProj:
    case TensorKind::kVector: return s;
  }
  PD_THROW(kInternal, "unknown VAE tensor kind");
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Host f32 values under FluxTransformer::random's law: matrices and kernels ~ 1/√fan_in, biases 0.01, GroupNorm
// scales 1 ± 0.02. Element i is Backend::fill_random's (core/random.h), made here because the binding (and the
// fused q, k, v) starts from host tensors; the decoder is small (≈ 50 M parameters for FLUX's).
Tensor random_host_tensor(uint64_t seed, const std::string& name, const Shape& shape) {
  Tensor t = Tensor::empty(shape, DType::kF32, cpu_allocator());
  const int64_t n = t.numel();
  float mean = 0.0f, stddev = 0.01f;
  if (shape.size() >= 2) {
    stddev = float(1.0 / std::sqrt(double(n / shape[0])));
  } else if (!ends_with(name, ".bias")) {
    mean = 1.0f;
    stddev = 0.02f;
  }
  const uint64_t s = named_tensor_seed(seed, name);
  float* p = t.data_as<float>();
  for (int64_t i = 0; i < n; ++i) p[i] = mean + random_uniform_value(s, uint64_t(i), stddev);
  return t;
}

}  // namespace

VaeWeights load_weights(Backend& backend, const VaeSource& source) {
  std::map<std::string, Tensor> host;
  for (const TensorSpec& spec : decoder_tensors(source.config)) host.emplace(spec.diffusers, read_tensor(source, spec));
  return bind_weights(backend, source.config, std::move(host));
}

VaeWeights random_weights(Backend& backend, const VaeConfig& config, uint64_t seed) {
  std::map<std::string, Tensor> host;
  for (const TensorSpec& spec : decoder_tensors(config))
    host.emplace(spec.diffusers, random_host_tensor(seed, spec.diffusers, internal_shape(spec)));
  return bind_weights(backend, config, std::move(host));
}

}  // namespace paradit::vae
