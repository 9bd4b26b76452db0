// Reading, converting and uploading the decoder's weights, then binding them to the block structure.
#include "models/vae/vae_weights.h"

#include <cstring>
#include <map>

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

}  // namespace

VaeWeights load_weights(Backend& backend, const VaeSource& source) {
  const VaeConfig& c = source.config;
  std::map<std::string, Tensor> host;
  for (const TensorSpec& spec : decoder_tensors(c)) host.emplace(spec.diffusers, read_tensor(source, spec));
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

}  // namespace paradit::vae
