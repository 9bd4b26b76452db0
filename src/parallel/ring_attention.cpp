#include "paradit/parallel/ring_attention.h"

#include <algorithm>
#include <memory>
#include <numeric>

#include "paradit/core/status.h"

namespace paradit {

namespace {

// RingKv::kGather: this rank's block to every other rank and theirs here in one exchange, beside the attention of
// the own block; then every other block in one attention call, and one merge of the two.
void gather_blocks_attention(Backend& be, Communicator& ring, const std::vector<int64_t>& kv_lengths,
                             const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
                             float scale) {
  const int R = ring.size(), r = ring.rank();
  const int64_t B = q.size(0), Sq = q.size(1), H = q.size(2), D = q.size(3);
  int64_t others = 0;
  for (int j = 0; j < R; ++j) others += j == r ? 0 : kv_lengths[j];
  // The other blocks side by side in rank order (this rank's skipped).
  const Tensor ko = be.empty({B, others, H, D}, k.dtype()), vo = be.empty({B, others, H, D}, v.dtype());
  std::vector<P2POp> ops;
  int64_t offset = 0;
  for (int j = 0; j < R; ++j) {
    if (j == r) continue;
    if (kv_lengths[r] > 0) {
      ops.push_back(P2POp::send(k, j));
      ops.push_back(P2POp::send(v, j));
    }
    if (kv_lengths[j] > 0) {
      ops.push_back(P2POp::recv(ko.slice(1, offset, kv_lengths[j]), j));
      ops.push_back(P2POp::recv(vo.slice(1, offset, kv_lengths[j]), j));
    }
    offset += kv_lengths[j];
  }
  std::unique_ptr<CommRequest> transfer = ops.empty() ? nullptr : ring.start(std::move(ops));
  const bool queries = out.numel() > 0;
  std::vector<Tensor> outs, lses;
  const auto attend = [&](const Tensor& kb, const Tensor& vb) {
    outs.push_back(be.empty(out.shape()));
    lses.push_back(be.empty({B, H, Sq}, DType::kF32));
    be.attention(outs.back(), lses.back(), q, kb, vb, scale);
  };
  if (queries && kv_lengths[r] > 0) attend(k, v);
  if (transfer) transfer->wait();
  if (queries && others > 0) attend(ko, vo);
  if (queries) be.lse_merge(out, lse, outs, lses);
}

}  // namespace

void ring_attention(Backend& be, Communicator& ring, const std::vector<int64_t>& kv_lengths, const Tensor& out,
                    const Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v, float scale, RingKv mode) {
  const int R = ring.size(), r = ring.rank();
  PD_REQUIRE(int(kv_lengths.size()) == R, "ring_attention: ", kv_lengths.size(), " block lengths for a ring of ", R);
  PD_REQUIRE(q.defined() && k.defined() && v.defined() && out.defined() && q.dim() == 4,
             "ring_attention: q, k, v, out must be [B, S, H, d]");
  const int64_t B = q.size(0), Sq = q.size(1), H = q.size(2), D = q.size(3);
  const Shape kv_shape = {B, kv_lengths[r], H, D};
  PD_REQUIRE(k.shape() == kv_shape && v.shape() == kv_shape, "ring_attention: rank ", r, " holds block k ", k.desc(),
             ", v ", v.desc(), "; expected ", shape_str(kv_shape));
  PD_REQUIRE(out.shape() == q.shape(), "ring_attention: out ", out.desc(), " differs from q ", q.desc());
  if (R == 1) {
    be.attention(out, lse, q, k, v, scale);
    return;
  }
  const bool queries = out.numel() > 0;
  PD_REQUIRE(!queries || std::accumulate(kv_lengths.begin(), kv_lengths.end(), int64_t(0)) > 0,
             "ring_attention: queries but no keys in any block");
  if (mode == RingKv::kGather) {
    gather_blocks_attention(be, ring, kv_lengths, out, lse, q, k, v, scale);
    return;
  }

  // Two flat buffers per tensor (one in hand, one arriving), viewed at the length of the block they hold.
  const int64_t longest = *std::max_element(kv_lengths.begin(), kv_lengths.end());
  const Tensor kbuf[2] = {be.empty({B * longest * H * D}, k.dtype()), be.empty({B * longest * H * D}, k.dtype())};
  const Tensor vbuf[2] = {be.empty({B * longest * H * D}, v.dtype()), be.empty({B * longest * H * D}, v.dtype())};

  // Each block's output and log-sum-exp are kept and merged in one pass at the end (Backend::lse_merge); on a ring
  // of more blocks than one merge takes, the pending ones are first folded into one.
  std::vector<Tensor> outs, lses;
  const auto merge_into = [&](const Tensor& o, const Tensor& l) {
    be.lse_merge(o, l, outs, lses);
    outs.clear();
    lses.clear();
  };
  const int next = (r + 1) % R, prev = (r + R - 1) % R;
  Tensor cur_k = k, cur_v = v;
  for (int step = 0; step < R; ++step) {
    const int held = (r - step + R) % R;  // the block in hand started on this rank
    std::unique_ptr<CommRequest> transfer;
    Tensor next_k, next_v;
    if (step + 1 < R) {
      const int64_t n = kv_lengths[(held + R - 1) % R];
      next_k = kbuf[step % 2].slice(0, 0, B * n * H * D).view({B, n, H, D});
      next_v = vbuf[step % 2].slice(0, 0, B * n * H * D).view({B, n, H, D});
      transfer = ring.start(
          {P2POp::send(cur_k, next), P2POp::send(cur_v, next), P2POp::recv(next_k, prev), P2POp::recv(next_v, prev)});
    }
    if (queries && kv_lengths[held] > 0) {
      if (int(outs.size()) == Backend::kMaxLseMergeBlocks) {
        const Tensor o = be.empty(out.shape()), l = be.empty({B, H, Sq}, DType::kF32);
        merge_into(o, l);
        outs.push_back(o);
        lses.push_back(l);
      }
      outs.push_back(be.empty(out.shape()));
      lses.push_back(be.empty({B, H, Sq}, DType::kF32));
      be.attention(outs.back(), lses.back(), q, cur_k, cur_v, scale);
    }
    if (transfer) {
      transfer->wait();
      cur_k = next_k;
      cur_v = next_v;
    }
  }
  if (queries) merge_into(out, lse);
}

}  // namespace paradit
