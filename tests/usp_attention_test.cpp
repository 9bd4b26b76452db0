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
  bool posted = false;  // packed, in steps (PostedUspAttention) with other work between them
  RingKv ring_kv = RingKv::kPass;
  int row_parts = 1;  // posted: q, k and v posted in this many parts of the rows, with work between
};

std::string name(const Case& c) {
  return "ulysses " + std::to_string(c.ulysses) + " ring " + std::to_string(c.ring) + " B " + std::to_string(c.batch) +
         " L " + std::to_string(c.length) + " H " + std::to_string(c.heads) + (c.packed_qkv ? " packed" : "") +
         (c.head_chunks > 1 ? " chunks " + std::to_string(c.head_chunks) : "") + (c.posted ? " posted" : "") +
         (c.ring_kv == RingKv::kGather ? " gather" : "") +
         (c.row_parts > 1 ? " row parts " + std::to_string(c.row_parts) : "");
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
      // Row parts: each part's rows written only just before it is posted (poisoned until then).
      const Tensor written = qkv.defined() && c.row_parts > 1 ? be->empty(qkv.shape()) : qkv;
      if (written.defined() && c.row_parts > 1) be->copy(written, test::poisoned_host(qkv.shape()));
      PostedUspAttention attention(*be, *g.ulysses, *g.ring, shard, out, lse, written, scale, c.head_chunks,
                                   c.ring_kv, c.row_parts);
      // The caller's own work while the transfers are under way (a single block's MLP GEMM, then the MLP part of
      // its output projection while the attention output travels back).
      const Tensor x = test::random_host({1, n + 1, 8}, 40 + uint64_t(s)), w = test::random_host({5, 8}, 41);
      const Tensor y = be->empty({1, n + 1, 5});
      for (int i = 0; i < c.row_parts && c.row_parts > 1; ++i) {
        const auto [first, count] = attention.part_rows(i);
        be->copy(written.slice(1, first, count), qkv.slice(1, first, count));
        attention.post_part(i);
        be->linear(y, x, w, Tensor(), Epilogue::kNone);
      }
      be->linear(y, x, w, Tensor(), Epilogue::kNone);
      attention.attend();
      be->linear_accumulate(y, x, w);
      attention.finish();
    } else if (c.packed_qkv) {
      usp_attention(*be, *g.ulysses, *g.ring, shard, out, lse, qkv, scale, c.head_chunks, c.ring_kv);
    } else {
      usp_attention(*be, *g.ulysses, *g.ring, shard, out, lse, ql, kl, vl, scale, c.ring_kv);
    }
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

TEST(UspAttention, PostedInRowPartsAsTheRowsAreWritten) {
  // Parts of uneven size, more parts than a rank has rows (empty parts), with head chunks, Ring and a batch.
  for (auto [u, r] : {std::pair{2, 1}, {4, 1}, {3, 2}, {2, 3}, {1, 3}, {8, 1}})
    for (int parts : {2, 3}) {
      Case c{u, r, 2, 29, 5, 16, true, 1, true};
      c.row_parts = parts;
      check_case(c);
      c.head_chunks = 2;
      c.ring_kv = RingKv::kGather;
      check_case(c);
    }
  Case few{4, 2, 1, 5, 3, 16, true, 1, true};
  few.row_parts = 2;
  check_case(few);
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

TEST(UspAttention, GatheredRingBlocksMatchSerial) {
  // RingKv::kGather on every mesh with a ring: uneven blocks, packed and not, a batch, posted (Ring alone: every
  // block posted before the caller's work, all keys in one call) and not, and empty blocks.
  for (int u = 1; u <= 4; ++u)
    for (int r = 2; u * r <= 8; ++r)
      for (int64_t length : {24, 29}) {
        Case c{u, r, 1, length, 3, 16, length == 29};
        c.ring_kv = RingKv::kGather;
        check_case(c);
      }
  for (Case c : {Case{2, 3, 2, 37, 4, 16, true}, Case{1, 8, 1, 6, 2, 16, false}, Case{2, 4, 1, 5, 3, 16, true},
                 Case{3, 2, 2, 29, 5, 16, true, 2, true}, Case{1, 3, 2, 29, 5, 16, true, 1, true},
                 Case{1, 8, 1, 5, 3, 16, true, 1, true}, Case{1, 4, 1, 29, 3, 16, true}}) {
    c.ring_kv = RingKv::kGather;
    check_case(c);
  }
}

TEST(UspAttention, RefusesAShardThatDoesNotMatchTheGroup) {
  InProcessGroup group(1);
  auto c = group.communicator(0);
  auto be = create_cpu_backend(1);
  const Tensor t = be->empty({1, 4, 2, 8});
  EXPECT_THROW(usp_attention(*be, *c, *c, SequenceShard(4, 2), t, Tensor(), t, t, t, 1.0f), Error);
  EXPECT_THROW(usp_attention(*be, *c, *c, SequenceShard(5, 1), t, Tensor(), t, t, t, 1.0f), Error);
}

TEST(LseMerge, BlocksOfTheKeysGiveTheWhole) {
  auto be = create_cpu_backend(1);
  const Tensor q = test::random_host({2, 7, 3, 8}, 4), k = test::random_host({2, 11, 3, 8}, 5),
               v = test::random_host({2, 11, 3, 8}, 6);
  const Tensor want = test::poisoned_host({2, 7, 3, 8}), want_lse = test::poisoned_host({2, 3, 7});
  be->attention(want, want_lse, q, k, v, 0.3f);
  // Keys [0, 4), an empty block (lse −∞, its output poisoned: it must weigh nothing), [4, 5), [5, 11).
  const Tensor none = Tensor::empty({2, 0, 3, 8}, DType::kF32, cpu_allocator());
  std::vector<Tensor> outs, lses;
  for (auto [start, length] : {std::pair{0, 4}, {0, 0}, {4, 1}, {5, 6}}) {
    outs.push_back(test::poisoned_host({2, 7, 3, 8}));
    lses.push_back(test::poisoned_host({2, 3, 7}));
    if (length > 0)
      be->attention(outs.back(), lses.back(), q, k.slice(1, start, length), v.slice(1, start, length), 0.3f);
    else
      be->fill(lses.back(), -INFINITY);
  }
  const Tensor out = test::poisoned_host({2, 7, 3, 8}), lse = test::poisoned_host({2, 3, 7});
  be->lse_merge(out, lse, outs, lses);
  EXPECT_LE(test::rel_l2(out, want), kTol);
  EXPECT_LE(test::rel_l2(lse, want_lse), kTol);
  // Without an lse to write; and one block alone is itself.
  const Tensor out2 = test::poisoned_host({2, 7, 3, 8});
  be->lse_merge(out2, Tensor(), outs, lses);
  EXPECT_LE(test::rel_l2(out2, want), kTol);
  be->lse_merge(out2, lse, {outs[0]}, {lses[0]});
  EXPECT_LE(test::rel_l2(out2, outs[0]), 1e-7);
  EXPECT_LE(test::rel_l2(lse, lses[0]), 1e-7);
  // Only keyless blocks: zeros and −∞.
  be->lse_merge(out2, lse, {outs[1]}, {lses[1]});
  for (int64_t i = 0; i < out2.numel(); ++i) ASSERT_EQ(out2.data_as<float>()[i], 0.0f) << i;
  for (int64_t i = 0; i < lse.numel(); ++i) ASSERT_EQ(lse.data_as<float>()[i], -INFINITY) << i;
  // Bad arguments: no blocks, too many, mismatched shapes.
  EXPECT_THROW(be->lse_merge(out, lse, {}, {}), Error);
  EXPECT_THROW(be->lse_merge(out, lse, std::vector<Tensor>(17, outs[0]), std::vector<Tensor>(17, lses[0])), Error);
  EXPECT_THROW(be->lse_merge(out, lse, {outs[0], test::poisoned_host({2, 6, 3, 8})}, {lses[0], lses[2]}), Error);
}

TEST(UspAttention, RingLongerThanOneMerge) {
  // 17 blocks: the first 16 are folded into one before the last arrives.
  check_case({1, 17, 1, 40, 2, 8, false});
  check_case({1, 17, 1, 12, 2, 8, false});  // fewer keys than ranks: empty blocks too
}

}  // namespace
}  // namespace paradit
