#include "paradit/models/flux_cost.h"

namespace paradit {

FluxFlops flux_forward_flops(const FluxConfig& c, int64_t image_tokens, int64_t text_tokens, int batch) {
  const double D = c.hidden(), N = double(image_tokens), T = double(text_tokens), S = N + T;
  const double mlp = 4 * D;
  FluxFlops f;
  // Double block, per stream of L tokens: qkv (3D) + out proj (D) + MLP up (4D) and down (4D): 2·L·D·12D.
  const double per_double = 2 * (N + T) * D * (3 * D + D + 2 * mlp);
  // Single block: linear1 (3D + 4D) and linear2 from 5D back to D.
  const double per_single = 2 * S * D * (3 * D + mlp) + 2 * S * (D + mlp) * D;
  // Modulation GEMVs (6D per stream per double block, 3D per single block, 2D final) and the embedders.
  const double modulation = 2 * D * (c.num_layers * 12 * D + c.num_single_layers * 3 * D + 2 * D);
  const double embed = 2 * (N * c.in_channels * D + T * c.joint_attention_dim * D + N * D * c.out_channels) +
                       2 * (256 * D + D * D) * (c.guidance_embeds ? 2 : 1) + 2 * (c.pooled_projection_dim * D + D * D);
  f.matmul = batch * (c.num_layers * per_double + c.num_single_layers * per_single + modulation + embed);
  f.attention = batch * double(c.num_layers + c.num_single_layers) * 4 * S * S * D;
  return f;
}

std::vector<double> flux_block_flops(const FluxConfig& c, int64_t image_tokens, int64_t text_tokens) {
  const double D = c.hidden(), S = double(image_tokens + text_tokens);
  const double attention = 4 * S * S * D;
  const double per_double = 2 * S * D * 12 * D + 2 * D * 12 * D + attention;
  const double per_single = 2 * S * D * 12 * D + 2 * D * 3 * D + attention;
  std::vector<double> f(size_t(c.num_layers), per_double);
  f.resize(size_t(c.num_layers + c.num_single_layers), per_single);
  return f;
}

}  // namespace paradit
