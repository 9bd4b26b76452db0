// The decoder on a band of rows (vae.h, "Parallel decode"). It mirrors VaeModel::run block by block; what
// differs is where the band's edges meet the rest of the image:
// - a 3×3 convolution reads its input from a [B, rows + 2, W + 2, C] buffer: the producer (GroupNorm, upsample,
//   the latents' copy) writes the interior, the two extra columns are the zero padding, the extra rows are the
//   neighbours' edge rows (or zeros at the image's top and bottom). The convolution then runs unpadded and
//   yields exactly the band's rows of the whole image's convolution;
// - GroupNorm statistics are summed over the group;
// - the attention gathers every rank's K and V.
// Ranks without rows (more ranks than latent rows) compute nothing but take part in every collective.
#include "models/vae/vae_parallel.h"

#include <cmath>

#include "models/vae/vae_blocks.h"
#include "paradit/core/status.h"

namespace paradit::vae {
namespace {

// A 3×3 convolution's input with its halo: `interior` is the band, a view into `padded`.
struct Haloed {
  Tensor padded, interior;
};

class BandDecoder {
 public:
  BandDecoder(Backend& backend, const VaeWeights& w, const VaeConfig& config, Communicator& group,
              int64_t latent_height, int64_t batch, int64_t latent_width)
      : be_(backend),
        w_(w),
        groups_(config.norm_num_groups),
        group_(group),
        bands_(latent_bands(latent_height, group)),
        rank_(group.rank()),
        batch_(batch),
        latent_width_(latent_width) {}

  Tensor run(const Tensor& band) {
    Tensor x = band;
    if (w_.post_quant.defined() && owns()) x = conv1x1(be_, w_.post_quant, x);
    Haloed in = haloed(x.size(3));
    if (owns()) be_.copy(in.interior, x);
    x = conv(w_.conv_in, std::move(in));
    x = resnet(w_.mid_resnet0, x);
    if (w_.mid_attention.qkv.defined()) x = attention(w_.mid_attention, x);
    x = resnet(w_.mid_resnet1, x);
    for (const UpBlock& up : w_.up_blocks) {
      for (const Resnet& r : up.resnets) x = resnet(r, x);
      if (up.upsample.w.defined()) x = upsample(up.upsample, x);
    }
    Haloed out = haloed(x.size(3));
    norm(out.interior, x, w_.norm_out, /*silu=*/true);
    x = Tensor();
    return conv(w_.conv_out, std::move(out));
  }

 private:
  int64_t rows(int p) const { return scale_ * bands_.count(p); }  // rank p's band height at this resolution
  int64_t height() const { return scale_ * bands_.length(); }
  int64_t width() const { return scale_ * latent_width_; }
  bool owns() const { return bands_.count(rank_) > 0; }
  // Bands are a prefix of the ranks (SequenceShard gives the short ones last), so a rank with rows has
  // neighbours with rows on both sides, except at the image's edges.
  bool above() const { return owns() && rank_ > 0; }
  bool below() const { return owns() && rank_ + 1 < group_.size() && bands_.count(rank_ + 1) > 0; }

  // The band as [B, rows, W, C], empty on a rank without rows.
  Tensor empty_band(int64_t channels) { return be_.empty({batch_, rows(rank_), width(), channels}); }

  Haloed haloed(int64_t channels) {
    if (!owns()) return {Tensor(), empty_band(channels)};
    const int64_t R = rows(rank_), W = width();
    Tensor padded = be_.empty({batch_, R + 2, W + 2, channels});
    be_.fill(padded.slice(2, 0, 1), 0.0f);
    be_.fill(padded.slice(2, W + 1, 1), 0.0f);
    if (!above()) be_.fill(padded.slice(1, 0, 1), 0.0f);
    if (!below()) be_.fill(padded.slice(1, R + 1, 1), 0.0f);
    Tensor interior = padded.slice(1, 1, R).slice(2, 1, W);
    return {std::move(padded), std::move(interior)};
  }

  // Fills the halo rows from the neighbours' edge rows (theirs come from this rank's): one batch per rank,
  // so the exchange cannot deadlock.
  void exchange(const Haloed& h) {
    std::vector<P2POp> ops;
    const int64_t R = rows(rank_), W = width();
    const auto row = [&](int64_t i) { return h.padded.slice(1, i, 1).slice(2, 1, W); };
    if (above()) {
      ops.push_back(P2POp::send(row(1), rank_ - 1));
      ops.push_back(P2POp::recv(row(0), rank_ - 1));
    }
    if (below()) {
      ops.push_back(P2POp::send(row(R), rank_ + 1));
      ops.push_back(P2POp::recv(row(R + 1), rank_ + 1));
    }
    if (!ops.empty()) group_.start(std::move(ops))->wait();
  }

  // The band's rows of a 3×3 convolution (padding 1) of the whole image; consumes the haloed input.
  Tensor conv(const Conv& c, Haloed h) {
    if (!owns()) return empty_band(c.w.size(0));
    exchange(h);
    Tensor y = empty_band(c.w.size(0));
    be_.conv2d(y, h.padded, c.w, c.b, /*pad=*/0);
    return y;
  }

  // GroupNorm of the whole image applied to this band. Two all-reduces of the [2, B, groups] sums: about 0 for
  // the mean, then about that mean for the variance (E[(x − m)²] − E[x − m]² with m ≈ mean does not cancel).
  void norm(const Tensor& y, const Tensor& x, const Norm& n, bool silu) {
    const int64_t G = groups_;
    const double count = double(height()) * double(width()) * double(x.size(3) / G);
    Tensor sums = be_.empty({2, batch_, G}, DType::kF32);
    be_.group_norm_sums(sums, x, groups_, Tensor());
    group_.all_reduce(sums);
    Tensor shift = be_.empty({batch_, G}, DType::kF32);
    const Tensor total = sums.select(0, 0);
    be_.axpby(shift, total, float(1.0 / count), total, 0.0f);
    be_.group_norm_sums(sums, x, groups_, shift);
    group_.all_reduce(sums);
    be_.group_norm_apply(y, x, sums, shift, count, n.w, n.b, groups_, kNormEps, silu);
  }

  Tensor resnet(const Resnet& r, const Tensor& x) {
    Haloed a = haloed(x.size(3));
    norm(a.interior, x, r.norm1, /*silu=*/true);
    Tensor h = conv(r.conv1, std::move(a));
    Haloed b = haloed(h.size(3));
    norm(b.interior, h, r.norm2, /*silu=*/true);
    h = Tensor();  // the serial block normalises in place: hold no more than it does
    h = conv(r.conv2, std::move(b));
    if (!owns()) return h;
    // (shortcut(x) + h) / output_scale_factor, the factor being 1 in the decoder.
    be_.add(h, h, r.shortcut.defined() ? conv1x1(be_, r.shortcut, x) : x);
    return h;
  }

  // The mid block's attention: queries of this band against the keys and values of every band.
  Tensor attention(const Attention& a, const Tensor& x) {
    const int64_t B = batch_, C = x.size(3), W = width();
    Tensor normed = empty_band(C);
    norm(normed, x, a.norm, /*silu=*/false);
    const int64_t S = rows(rank_) * W;
    Tensor qkv = be_.empty({B, S, 3 * C});
    if (owns()) be_.linear(qkv, normed.view({B, S, C}), a.qkv.w, a.qkv.b, Epilogue::kNone);
    normed = Tensor();
    Tensor kv = be_.empty({B, height() * W, 2 * C});
    std::vector<Tensor> pieces(size_t(group_.size()));
    for (int p = 0; p < group_.size(); ++p) pieces[size_t(p)] = kv.slice(1, scale_ * bands_.start(p) * W, rows(p) * W);
    group_.all_gather_v(pieces, qkv.slice(2, C, 2 * C));
    if (!owns()) return x;
    Tensor o = be_.empty({B, S, 1, C});
    be_.attention(o, Tensor(), qkv.slice(2, 0, C).unsqueeze(2), kv.slice(2, 0, C).unsqueeze(2),
                  kv.slice(2, C, C).unsqueeze(2), float(1.0 / std::sqrt(double(C))));
    qkv = Tensor();
    kv = Tensor();
    Tensor y = empty_band(C);
    be_.linear(y.view({B, S, C}), o.view({B, S, C}), a.out.w, a.out.b, Epilogue::kNone);
    be_.add(y, y, x);  // residual_connection
    return y;
  }

  Tensor upsample(const Conv& c, const Tensor& x) {
    scale_ *= 2;
    Haloed up = haloed(x.size(3));
    if (owns()) be_.upsample_nearest2x(up.interior, x);
    return conv(c, std::move(up));
  }

  Backend& be_;
  const VaeWeights& w_;
  int groups_;
  Communicator& group_;
  SequenceShard bands_;
  int rank_;
  int64_t batch_, latent_width_;
  int64_t scale_ = 1;  // pixels per latent row at the current resolution
};

}  // namespace

Tensor decode_band(Backend& backend, const VaeWeights& weights, const VaeConfig& config, const Tensor& band,
                   int64_t latent_height, Communicator& group) {
  PD_REQUIRE(band.dim() == 4 && band.size(1) == latent_bands(latent_height, group).count(group.rank()),
             "parallel VAE decode: rank ", group.rank(), " got latent rows ", band.desc(), " for a band of ",
             latent_bands(latent_height, group).count(group.rank()), " of ", latent_height, " rows");
  return BandDecoder(backend, weights, config, group, latent_height, band.size(0), band.size(2)).run(band);
}

Tensor gather_bands(Backend& backend, const Tensor& band, int64_t height, int scale, Communicator& group, int root) {
  const SequenceShard bands = latent_bands(height / scale, group);
  const int rank = group.rank();
  const Shape whole_shape = {band.size(0), height, band.size(2), band.size(3)};
  const auto piece = [&](const Tensor& whole, int p) {
    return whole.slice(1, scale * bands.start(p), scale * bands.count(p));
  };
  if (root < 0) {
    Tensor whole = backend.empty(whole_shape, band.dtype());
    std::vector<Tensor> pieces;
    for (int p = 0; p < group.size(); ++p) pieces.push_back(piece(whole, p));
    group.all_gather_v(pieces, band);
    return whole;
  }
  PD_REQUIRE(root < group.size(), "parallel VAE decode: root ", root, " is not a rank of ", group.describe());
  if (rank != root) {
    if (band.size(1) > 0) group.start({P2POp::send(band, root)})->wait();
    return Tensor();
  }
  Tensor whole = backend.empty(whole_shape, band.dtype());
  backend.copy(piece(whole, rank), band);
  std::vector<P2POp> ops;
  for (int p = 0; p < group.size(); ++p)
    if (p != rank && bands.count(p) > 0) ops.push_back(P2POp::recv(piece(whole, p), p));
  if (!ops.empty()) group.start(std::move(ops))->wait();
  return whole;
}

}  // namespace paradit::vae
