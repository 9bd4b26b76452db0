// The parallel decode of vae.h (VaeDecoder::decode_parallel): the decoder run on one band of rows per rank.
#pragma once

#include "models/vae/vae_weights.h"
#include "paradit/comm/communicator.h"
#include "paradit/parallel/sequence_shard.h"

namespace paradit::vae {

// Latent rows [start(r), end(r)) belong to group rank r.
inline SequenceShard latent_bands(int64_t latent_height, const Communicator& group) {
  return SequenceShard(latent_height, group.size());
}

// This rank's band of the decoder output, [B, 8·rows, 8·w, out_channels] in compute dtype (rows =
// latent_bands(...).count(rank), possibly 0). band: this rank's rows of the NHWC latents [B, rows, w, C], after
// post-scaling, contiguous, in compute dtype; latent_height: h of the whole latents. A collective of the group.
Tensor decode_band(Backend& backend, const VaeWeights& weights, const VaeConfig& config, const Tensor& band,
                   int64_t latent_height, Communicator& group);

// The whole image [B, H, W, C] from every rank's band (rows of SequenceShard(H / scale, P) times scale each) on
// `root`, or on every rank when root is −1; undefined elsewhere. A collective of the group.
Tensor gather_bands(Backend& backend, const Tensor& band, int64_t height, int scale, Communicator& group, int root);

}  // namespace paradit::vae
