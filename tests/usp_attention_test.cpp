// USP attention on CPU ranks (threads, in-process communicator, one CPU backend each) against single-rank
// attention over the whole sequence: every (ulysses, ring) with ulysses·ring ≤ 8, sequence lengths that do
// and do not divide the degree, head counts that do not divide Ulysses, ranks with no heads or no tokens.
#include "paradit/parallel/usp_attention.h"

#include <cmath>

#include "paradit/comm/in_process.h"
#include "paradit/parallel/mesh_groups.h"
#include "test_util.h"

namespace paradit {
namespace {

constexpr double kTol = 1e-5;  // parallel vs serial in fp32 (DESIGN.md)

struct Case {
  int ulysses, ring;
  int64_t batch, length, heads, head_dim;
  bool packed_qkv;  // q, k, v side by side in one [B, S, 3, H, d] buffer (the packed overload)
  int head_chunks = 1;  // packed: Ulysses pipelined over this many chunks of heads
  bool posted = false;  // packed, in two calls (PostedUspAttention) with other work between them
};

std::string name(const Case& c) {
  return "ulysses " + std::to_string(c.ulysses) + " ring " + std::to_string(c.ring) + " B " + std::to_string(c.batch) +
         " L " + std::to_string(c.length) + " H " + std::to_string(c.heads) + (c.packed_qkv ? " packed" : "") +
         (c.head_chunks > 1 ? " chunks " + std::to_string(c.head_chunks) : "") + (c.posted ? " posted" : "");
}

void check_case(const Case& c) {
  SCOPED_TRACE(name(c));
  const int world = c.ulysses * c.ring;
  const Shape full = {c.batch, c.length, c.heads, c.head_dim};
  const Tensor q = test::random_host(full, 1), k = test::random_host(full, 2), v = test::random_host(full, 3);
  const float scale = 1.0f / std::sqrt(float(c.head_dim));

  auto serial = create_cpu_backend(1);
  const Tensor want = test::poisoned_host(full), want_lse = test::poisoned_host({c.batch, c.heads, c.length});
  serial->attention(want, want_lse, q, k, v, scale);

  const Tensor got = test::poisoned_host(full), got_lse = test::poisoned_host({c.batch, c.heads, c.length});
  const DeviceMesh mesh = DeviceMesh::create({.ulysses = c.ulysses, .ring = c.ring}, world);
  const SequenceShard shard(c.length, world);
  InProcessGroup group(world);
  const auto outcomes = run_ranks(group, [&](Communicator& w) {
    auto be = create_cpu_backend(1);
    const MeshGroups g = MeshGroups::create(mesh, w);
    const int s = g.sp->rank();
    const int64_t n = shard.count(s), start = shard.start(s);
    const Shape local = {c.batch, n, c.heads, c.head_dim};
    Tensor qkv, ql, kl, vl;
    if (c.packed_qkv) {
      qkv = be->empty({c.batch, n, 3, c.heads, c.head_dim});
      ql = qkv.select(2, 0), kl = qkv.select(2, 1), vl = qkv.select(2, 2);
    } else {
      ql = be->empty(local), kl = be->empty(local), vl = be->empty(local);
    }
    be->copy(ql, q.slice(1, start, n));
    be->copy(kl, k.slice(1, start, n));
    be->copy(vl, v.slice(1, start, n));
    const Tensor out = test::poisoned_host(local), lse = test::poisoned_host({c.batch, c.heads, n});
    if (c.posted) {
      PostedUspAttention attention(*be, *g.ulysses, *g.ring, shard, out, lse, qkv, scale, c.head_chunks);
      // The caller's own work while the transfers are under way (a single block's MLP GEMM).
      const Tensor x = test::random_host({1, n + 1, 8}, 40 + uint64_t(s)), w = test::random_host({5, 8}, 41);
      const Tensor y = be->empty({1, n + 1, 5});
      be->linear(y, x, w, Tensor(), Epilogue::kNone);
      attention.finish();
    } else if (c.packed_qkv) {
      usp_attention(*be, *g.ulysses, *g.ring, shard, out, lse, qkv, scale, c.head_chunks);
    }
    else
      usp_attention(*be, *g.ulysses, *g.ring, shard, out, lse, ql, kl, vl, scale);
    // Each rank writes its own token range of the gathered result.
    be->copy(got.slice(1, start, n), out);
    be->copy(got_lse.slice(2, start, n), lse);
  });
  for (size_t r = 0; r < outcomes.size(); ++r)
    ASSERT_TRUE(outcomes[r].ok()) << "rank " << r << ": " << outcomes[r].to_string();
  EXPECT_LE(test::rel_l2(got, want), kTol);
  EXPECT_LE(test::rel_l2(got_lse, want_lse), kTol);
}

TEST(UspAttention, EveryUlyssesRingSplitMatchesSerial) {
  for (int u = 1; u <= 8; ++u)
    for (int r = 1; u * r <= 8; ++r)
      for (int64_t length : {24, 29})
        for (int64_t heads : {3, 4}) check_case({u, r, 1, length, heads, 16, length == 29});
}

TEST(UspAttention, BatchAndStridedPackedQkv) {
  check_case({2, 3, 2, 37, 4, 16, true});
  check_case({3, 2, 2, 29, 3, 16, true});
  check_case({1, 5, 2, 29, 3, 16, true});
  check_case({6, 1, 2, 29, 5, 16, true});
}

TEST(UspAttention, UlyssesPipelinedOverHeadChunks) {
  // Chunks of uneven size, more chunks than a rank has heads (empty chunks), with Ring and with a batch.
  for (int chunks : {2, 3})
    for (auto [u, r] : {std::pair{2, 1}, {4, 1}, {2, 2}, {3, 2}, {2, 3}, {8, 1}})
      for (int64_t heads : {5, 7}) check_case({u, r, 1, 29, heads, 16, true, chunks});
  check_case({2, 2, 2, 37, 6, 16, true, 2});
  check_case({4, 2, 1, 29, 2, 16, true, 2});  // ranks without heads
}

TEST(UspAttention, PostedInTwoCallsWithWorkBetween) {
  for (auto [u, r] : {std::pair{1, 3}, {2, 1}, {3, 2}, {4, 2}, {8, 1}})
    for (int chunks : {1, 2}) check_case({u, r, 2, 29, 5, 16, true, chunks, true});
}

TEST(UspAttention, MoreUlyssesRanksThanHeads) {
  // Ranks 2 and 3 of each Ulysses group hold no head; they still relay tokens.
  check_case({4, 2, 1, 29, 2, 16, false});
  check_case({8, 1, 1, 24, 3, 16, false});
  check_case({4, 2, 1, 29, 2, 16, true});
}

TEST(UspAttention, FewerTokensThanRanks) {
  // 5 tokens over 8 ranks: the last ranks hold none, the last ring block is empty.
  check_case({2, 4, 1, 5, 3, 16, false});
  check_case({1, 8, 1, 6, 2, 16, false});
  check_case({8, 1, 1, 3, 4, 16, false});
  check_case({2, 4, 1, 5, 3, 16, true});
  check_case({8, 1, 1, 3, 4, 16, true});
}

TEST(UspAttention, RefusesAShardThatDoesNotMatchTheGroup) {
  InProcessGroup group(1);
  auto c = group.communicator(0);
  auto be = create_cpu_backend(1);
  const Tensor t = be->empty({1, 4, 2, 8});
  EXPECT_THROW(usp_attention(*be, *c, *c, SequenceShard(4, 2), t, Tensor(), t, t, t, 1.0f), Error);
  EXPECT_THROW(usp_attention(*be, *c, *c, SequenceShard(5, 1), t, Tensor(), t, t, t, 1.0f), Error);
}

TEST(LseMerge, TwoHalvesOfTheKeysGiveTheWhole) {
  auto be = create_cpu_backend(1);
  const Tensor q = test::random_host({2, 7, 3, 8}, 4), k = test::random_host({2, 11, 3, 8}, 5),
               v = test::random_host({2, 11, 3, 8}, 6);
  const Tensor want = test::poisoned_host({2, 7, 3, 8}), want_lse = test::poisoned_host({2, 3, 7});
  be->attention(want, want_lse, q, k, v, 0.3f);
  const Tensor out = test::poisoned_host({2, 7, 3, 8}), lse = test::poisoned_host({2, 3, 7});
  const Tensor bo = test::poisoned_host({2, 7, 3, 8}), bl = test::poisoned_host({2, 3, 7});
  be->attention(out, lse, q, k.slice(1, 0, 4), v.slice(1, 0, 4), 0.3f);
  be->attention(bo, bl, q, k.slice(1, 4, 7), v.slice(1, 4, 7), 0.3f);
  be->lse_merge(out, lse, bo, bl);
  EXPECT_LE(test::rel_l2(out, want), kTol);
  EXPECT_LE(test::rel_l2(lse, want_lse), kTol);

  // A block over no keys (lse −∞) changes nothing; merged into an empty accumulator it is the block itself.
  const Tensor none = Tensor::empty({2, 0, 3, 8}, DType::kF32, cpu_allocator());
  be->attention(bo, bl, q, none, none, 0.3f);
  be->lse_merge(out, lse, bo, bl);
  EXPECT_LE(test::rel_l2(out, want), kTol);
  be->attention(bo, bl, q, k, v, 0.3f);
  const Tensor empty_out = test::poisoned_host({2, 7, 3, 8}), empty_lse = test::poisoned_host({2, 3, 7});
  be->attention(empty_out, empty_lse, q, none, none, 0.3f);
  be->lse_merge(empty_out, empty_lse, bo, bl);
  EXPECT_LE(test::rel_l2(empty_out, want), kTol);
  EXPECT_LE(test::rel_l2(empty_lse, want_lse), kTol);
}

}  // namespace
}  // namespace paradit
