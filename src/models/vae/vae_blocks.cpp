// ResnetBlock2D, the mid block's Attention and Upsample2D as diffusers' Decoder runs them (temb None,
// output_scale_factor 1, rescale_output_factor 1), on the Backend op set.
#include "models/vae/vae_blocks.h"

#include <cmath>

namespace paradit::vae {

namespace {

Shape with_channels(const Tensor& x, int64_t c) { return {x.size(0), x.size(1), x.size(2), c}; }

// [B, H, W, C] as the [B, H·W, C] token matrix that Linear and attention read (a view: x is contiguous).
Tensor tokens(const Tensor& x) { return x.view({x.size(0), x.size(1) * x.size(2), x.size(3)}); }

}  // namespace

Tensor conv3x3(Backend& backend, const Conv& conv, const Tensor& x) {
  Tensor y = backend.empty(with_channels(x, conv.w.size(0)));
  backend.conv2d(y, x, conv.w, conv.b, 1);
  return y;
}

Tensor conv1x1(Backend& backend, const Linear& proj, const Tensor& x) {
  Tensor y = backend.empty(with_channels(x, proj.w.size(0)));
  backend.linear(tokens(y), tokens(x), proj.w, proj.b, Epilogue::kNone);
  return y;
}

Tensor resnet_block(Backend& backend, const Resnet& r, const Tensor& x, int groups) {
  Tensor h = backend.empty(x.shape());
  backend.group_norm(h, x, r.norm1.w, r.norm1.b, groups, kNormEps, /*silu=*/true);
  h = conv3x3(backend, r.conv1, h);
  backend.group_norm(h, h, r.norm2.w, r.norm2.b, groups, kNormEps, /*silu=*/true);
  h = conv3x3(backend, r.conv2, h);
  // (shortcut(x) + h) / output_scale_factor, the factor being 1 in the decoder.
  if (r.shortcut.defined()) {
    backend.add(h, h, conv1x1(backend, r.shortcut, x));
  } else {
    backend.add(h, h, x);
  }
  return h;
}

Tensor attention_block(Backend& backend, const Attention& a, const Tensor& x, int groups) {
  const int64_t B = x.size(0), S = x.size(1) * x.size(2), C = x.size(3);
  Tensor normed = backend.empty(x.shape());
  backend.group_norm(normed, x, a.norm.w, a.norm.b, groups, kNormEps, /*silu=*/false);
  Tensor qkv = backend.empty({B, S, 3 * C});
  backend.linear(qkv, tokens(normed), a.qkv.w, a.qkv.b, Epilogue::kNone);
  normed = Tensor();
  // Strided [B, S, 1, C] views of the fused buffer: one head whose width is the channel count.
  const auto head = [&](int part) { return qkv.slice(2, part * C, C).unsqueeze(2); };
  Tensor o = backend.empty({B, S, 1, C});
  backend.attention(o, Tensor(), head(0), head(1), head(2), float(1.0 / std::sqrt(double(C))));
  qkv = Tensor();
  Tensor y = backend.empty(x.shape());
  backend.linear(tokens(y), o.view({B, S, C}), a.out.w, a.out.b, Epilogue::kNone);
  backend.add(y, y, x);  // residual_connection
  return y;
}

Tensor upsample_block(Backend& backend, const Conv& conv, const Tensor& x) {
  Tensor up = backend.empty({x.size(0), 2 * x.size(1), 2 * x.size(2), x.size(3)});
  backend.upsample_nearest2x(up, x);
  return conv3x3(backend, conv, up);
}

}  // namespace paradit::vae
