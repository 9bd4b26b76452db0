// Tensor names of diffusers' Decoder and of the LDM/BFL file it is converted from (the inverse of
// convert_ldm_vae_checkpoint): up_blocks.{i} ↔ up.{n−1−i} (LDM counts from the highest resolution),
// mid_block.resnets.{j} ↔ mid.block_{j+1}, conv_shortcut ↔ nin_shortcut, conv_norm_out ↔ norm_out,
// attentions.0.{group_norm, to_q, to_k, to_v, to_out.0} ↔ attn_1.{norm, q, k, v, proj_out}.
#include "models/vae/vae_tensors.h"

namespace paradit::vae {

namespace {

class Lister {
 public:
  explicit Lister(std::vector<TensorSpec>& out) : out_(out) {}

  void conv(const std::string& d, const std::string& l, int64_t cout, int64_t cin, int k) {
    out_.push_back({d + ".weight", l + ".weight", "", {cout, cin, k, k},
                    k == 1 ? TensorKind::kConv1x1 : TensorKind::kConv3x3});
    vector(d + ".bias", l + ".bias", cout);
  }
  void norm(const std::string& d, const std::string& l, int64_t c) {
    vector(d + ".weight", l + ".weight", c);
    vector(d + ".bias", l + ".bias", c);
  }
  void attn_proj(const std::string& d, const std::string& l, const std::string& legacy, int64_t c) {
    out_.push_back({d + ".weight", l + ".weight", legacy + ".weight", {c, c}, TensorKind::kAttnProj});
    out_.push_back({d + ".bias", l + ".bias", legacy + ".bias", {c}, TensorKind::kVector});
  }
  void resnet(const std::string& d, const std::string& l, int64_t cin, int64_t cout) {
    norm(d + ".norm1", l + ".norm1", cin);
    conv(d + ".conv1", l + ".conv1", cout, cin, 3);
    norm(d + ".norm2", l + ".norm2", cout);
    conv(d + ".conv2", l + ".conv2", cout, cout, 3);
    if (cin != cout) conv(d + ".conv_shortcut", l + ".nin_shortcut", cout, cin, 1);
  }

 private:
  void vector(const std::string& d, const std::string& l, int64_t c) {
    out_.push_back({d, l, "", {c}, TensorKind::kVector});
  }
  std::vector<TensorSpec>& out_;
};

}  // namespace

std::vector<TensorSpec> decoder_tensors(const VaeConfig& c) {
  std::vector<TensorSpec> out;
  Lister t(out);
  const int n = int(c.block_out_channels.size());
  const int64_t top = c.block_out_channels.back();
  if (c.use_post_quant_conv) t.conv("post_quant_conv", "post_quant_conv", c.latent_channels, c.latent_channels, 1);
  t.conv("decoder.conv_in", "decoder.conv_in", top, c.latent_channels, 3);

  t.resnet("decoder.mid_block.resnets.0", "decoder.mid.block_1", top, top);
  if (c.mid_block_add_attention) {
    const std::string d = "decoder.mid_block.attentions.0", l = "decoder.mid.attn_1";
    out.push_back({d + ".group_norm.weight", l + ".norm.weight", "", {top}, TensorKind::kVector});
    out.push_back({d + ".group_norm.bias", l + ".norm.bias", "", {top}, TensorKind::kVector});
    t.attn_proj(d + ".to_q", l + ".q", d + ".query", top);
    t.attn_proj(d + ".to_k", l + ".k", d + ".key", top);
    t.attn_proj(d + ".to_v", l + ".v", d + ".value", top);
    t.attn_proj(d + ".to_out.0", l + ".proj_out", d + ".proj_attn", top);
  }
  t.resnet("decoder.mid_block.resnets.1", "decoder.mid.block_2", top, top);

  int64_t prev = top;
  for (int i = 0; i < n; ++i) {
    const int64_t width = c.block_out_channels[n - 1 - i];
    const std::string d = "decoder.up_blocks." + std::to_string(i);
    const std::string l = "decoder.up." + std::to_string(n - 1 - i);
    for (int j = 0; j <= c.layers_per_block; ++j) {
      t.resnet(d + ".resnets." + std::to_string(j), l + ".block." + std::to_string(j), j == 0 ? prev : width, width);
    }
    if (i + 1 < n) t.conv(d + ".upsamplers.0.conv", l + ".upsample.conv", width, width, 3);
    prev = width;
  }
  t.norm("decoder.conv_norm_out", "decoder.norm_out", prev);
  t.conv("decoder.conv_out", "decoder.conv_out", c.out_channels, prev, 3);
  return out;
}

}  // namespace paradit::vae
