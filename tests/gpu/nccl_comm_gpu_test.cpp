// The NCCL transport on the machine's GPUs (two to eight): every call gives the values it should, synchronous
// and stream-ordered alike — stream-ordered with the backend computing on each result right behind the call,
// many calls deep, so the device must keep the order the host no longer waits for — and a rank that never
// joins a stream-ordered call fails every rank with a timeout that names it, instead of hanging; fresh
// communicators then work. And USP attention over NCCL — Ulysses alone, Ring alone (K/V passed or gathered) and
// both, its head chunks pipelined or not, in both modes — against attention on one GPU. Send/recv batches run
// both ways: on the copy engines (peer access) and through NCCL.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "comm_checks.h"
#include "gpu_ranks.h"
#include "paradit/parallel/mesh_groups.h"
#include "paradit/parallel/usp_attention.h"
#include "test_util.h"

namespace paradit {
namespace {

using namespace test;  // GpuRanks, on_gpus, code, host, poisoned_host

constexpr int kIterations = 12;  // well past the transfers a rank keeps in flight

// A value that says which iteration, sender, receiver and element it is; exact in f32.
float value(int k, int from, int to, int64_t i) { return code(from, to, i) + 100000.0f * float(k); }

Tensor filled(const Shape& shape, int k, int from, int to) {
  Tensor t = host(shape);
  for (int64_t i = 0; i < t.numel(); ++i) t.data_as<float>()[i] = value(k, from, to, i);
  return t;
}

void expect_values(const Tensor& got, int k, int from, int to, float scale, const std::string& what) {
  const Tensor c = to_contiguous_f32(got);
  int bad = 0;
  for (int64_t i = 0; i < c.numel() && bad < 3; ++i)
    if (c.data_as<float>()[i] != scale * value(k, from, to, i)) {
      ADD_FAILURE() << what << ", iteration " << k << ", piece " << from << "->" << to << ", element " << i << ": "
                    << c.data_as<float>()[i] << " != " << scale * value(k, from, to, i);
      ++bad;
    }
}

int64_t a2a_rows(int from, int to) { return (from + to) % 3 + 1; }
int64_t gather_rows(int rank, int k) { return (rank + k) % 2 + 1; }

// What one rank received in iteration k, kept on the device until the end.
struct Received {
  Tensor a2a_doubled;  // 2 × the all-to-all's recv, computed right behind it
  Tensor sum;          // all-reduce of (rank + 1)(k + 1), then + 1 on the device
  Tensor gathered;     // uneven all-gather
  Tensor from_prev;    // ring send/recv: the predecessor's piece
  // Per peer: its piece, sent and received through views of different layouts.
  std::vector<Tensor> laid_out;
  Tensor bcast;        // broadcast from rank k % P
};

Tensor device_poisoned(Backend& be, const Shape& shape) { return be.upload(poisoned_host(shape), DType::kF32); }

// A [3, 2, 4] view, poisoned, in one of five layouts: contiguous; rows of 4 floats at two pitches; rows of 8
// floats; every other float (no 2-D form). Peer-copy transfers move each pair of layouts in place, through a
// contiguous stand-in where the rows differ, or packed.
constexpr int kLayouts = 5;
Tensor laid_out(Backend& be, int kind) {
  switch (kind) {
    case 0: return device_poisoned(be, {3, 2, 4});
    case 1: return device_poisoned(be, {3, 2, 8}).slice(2, 2, 4);
    case 2: return device_poisoned(be, {3, 2, 6}).slice(2, 1, 4);
    case 3: return device_poisoned(be, {3, 4, 4}).slice(1, 1, 2);
    default: return device_poisoned(be, {3, 2, 4, 2}).select(3, 1);
  }
}
int send_layout(int from, int to, int k) { return (from + 2 * to + k) % kLayouts; }
int recv_layout(int from, int to, int k) { return (from + to + k + 1) % kLayouts; }

Received iteration(int k, int r, Backend& be, Communicator& c) {
  const int P = c.size();
  Received out;
  // All-to-all, uneven pieces.
  Counts send_counts, recv_counts;
  std::vector<Tensor> pieces;
  int64_t send_rows = 0, recv_rows = 0;
  for (int p = 0; p < P; ++p) {
    send_counts.push_back(a2a_rows(r, p));
    recv_counts.push_back(a2a_rows(p, r));
    send_rows += send_counts.back();
    recv_rows += recv_counts.back();
  }
  Tensor send = host({send_rows, 4});
  float* at = send.data_as<float>();
  for (int p = 0; p < P; ++p)
    for (int64_t i = 0; i < send_counts[size_t(p)] * 4; ++i) *at++ = value(k, r, p, i);
  const Tensor recv = device_poisoned(be, {recv_rows, 4});
  c.all_to_all(recv, be.upload(send, DType::kF32), 0, send_counts, recv_counts);
  out.a2a_doubled = be.empty({recv_rows, 4}, DType::kF32);
  be.axpby(out.a2a_doubled, recv, 2.0f, recv, 0.0f);

  // All-reduce, then computed on.
  Tensor mine = host({1, 5});
  std::fill_n(mine.data_as<float>(), 5, float((r + 1) * (k + 1)));
  out.sum = be.upload(mine, DType::kF32);
  c.all_reduce(out.sum);
  Tensor ones = host({1, 5});
  std::fill_n(ones.data_as<float>(), 5, 1.0f);
  be.axpby(out.sum, out.sum, 1.0f, be.upload(ones, DType::kF32), 1.0f);

  // All-gather, uneven.
  std::vector<int64_t> counts;
  int64_t total = 0;
  for (int p = 0; p < P; ++p) total += counts.emplace_back(gather_rows(p, k));
  out.gathered = device_poisoned(be, {total, 3});
  c.all_gather(out.gathered, be.upload(filled({gather_rows(r, k), 3}, k, r, 0), DType::kF32), 0, counts);

  // Ring: send to the successor, receive from the predecessor, compute while the transfer runs.
  const int next = (r + 1) % P, prev = (r + P - 1) % P;
  const Tensor theirs = device_poisoned(be, {6, 2});
  Tensor side = be.upload(filled({64, 64}, k, r, r), DType::kF32);
  auto request = c.start({P2POp::send(be.upload(filled({6, 2}, k, r, next), DType::kF32), next),
                          P2POp::recv(theirs, prev)});
  be.axpby(side, side, 0.5f, side, 0.5f);
  request->wait();
  out.from_prev = be.empty({6, 2}, DType::kF32);
  be.copy(out.from_prev, theirs);

  // A piece to every rank (this one included) from a view of one layout into a view of another; one piece empty.
  std::vector<P2POp> ops;
  std::vector<Tensor> views(static_cast<size_t>(P));
  for (int p = 0; p < P; ++p) {
    const Tensor mine = laid_out(be, send_layout(r, p, k));
    be.copy(mine, be.upload(filled({3, 2, 4}, k, r, p), DType::kF32));
    ops.push_back(P2POp::send(mine, p));
    views[size_t(p)] = laid_out(be, recv_layout(p, r, k));
    ops.push_back(P2POp::recv(views[size_t(p)], p));
  }
  ops.push_back(P2POp::send(be.empty({0, 4}, DType::kF32), next));
  ops.push_back(P2POp::recv(be.empty({0, 4}, DType::kF32), prev));
  c.start(std::move(ops))->wait();
  for (const Tensor& v : views) {
    out.laid_out.push_back(be.empty({3, 2, 4}, DType::kF32));
    be.copy(out.laid_out.back(), v);
  }

  // Broadcast from a different root each iteration.
  const int root = k % P;
  out.bcast = r == root ? be.upload(filled({7}, k, root, 0), DType::kF32) : device_poisoned(be, {7});
  c.broadcast(out.bcast, root);
  return out;
}

void check(const std::vector<Received>& got, int r, int P, Backend& be, const std::string& mode) {
  for (int k = 0; k < int(got.size()); ++k) {
    const Received& g = got[size_t(k)];
    const Tensor a2a = be.download_f32(g.a2a_doubled);
    for (int p = 0, row = 0; p < P; row += int(a2a_rows(p, r)), ++p)
      expect_values(a2a.slice(0, row, a2a_rows(p, r)), k, p, r, 2.0f, mode + " all_to_all");
    const Tensor sum = be.download_f32(g.sum);
    const float want = float((k + 1) * P * (P + 1) / 2 + 1);
    for (int i = 0; i < 5; ++i)
      EXPECT_EQ(sum.data_as<float>()[i], want) << mode << " all_reduce, iteration " << k;
    const Tensor gathered = be.download_f32(g.gathered);
    for (int p = 0, row = 0; p < P; row += int(gather_rows(p, k)), ++p)
      expect_values(gathered.slice(0, row, gather_rows(p, k)), k, p, 0, 1.0f, mode + " all_gather");
    expect_values(be.download_f32(g.from_prev), k, (r + P - 1) % P, r, 1.0f, mode + " send/recv");
    expect_values(be.download_f32(g.bcast), k, k % P, 0, 1.0f, mode + " broadcast");
    for (int p = 0; p < P; ++p)
      expect_values(be.download_f32(g.laid_out[size_t(p)]), k, p, r, 1.0f,
                    detail::concat(mode, " send/recv, layout ", send_layout(p, r, k), " into ", recv_layout(p, r, k)));
  }
}

int gpus_or_skip(std::string* why) {
  const int n = std::min(cuda_device_count(why), 8);
  return n >= 2 ? n : 0;
}

// Send/recv batches run on the copy engines where the GPUs reach each other's memory, else through NCCL
// (PARADIT_P2P=nccl forces it): fn runs with the world's communicators made each way, named in its traces.
void for_each_p2p_transport(const std::function<void(const std::string&)>& fn) {
  for (const std::string transport : {"copy engines", "nccl"}) {
    if (transport == "nccl") {
      setenv("PARADIT_P2P", "nccl", 1);
    } else {
      unsetenv("PARADIT_P2P");
    }
    SCOPED_TRACE("send/recv on " + transport);
    fn(transport);
  }
  unsetenv("PARADIT_P2P");
}

TEST(NcclCommGpu, EveryCallGivesItsValuesSynchronousAndStreamOrdered) {
  std::string why;
  const int P = gpus_or_skip(&why);
  if (!P) GTEST_SKIP() << "needs two usable GPUs: " << why;
  for_each_p2p_transport([&](const std::string& transport) {
    GpuRanks g = gpu_ranks(P, &why);
    if (g.comms.empty()) GTEST_SKIP() << why;
    for (const bool ordered : {false, true}) {
      const std::string mode = (ordered ? "stream-ordered" : "synchronous") + (", send/recv on " + transport);
      SCOPED_TRACE(mode + " on " + std::to_string(P) + " GPUs");
      on_gpus(g, [&](int r, Backend& be, Communicator& c) {
        // A group split from the world shares the rank's stream order: calls alternate between the two.
        auto half = c.split(r % 2, r, "half");
        c.set_stream_ordered(ordered);
        std::vector<Received> got;
        for (int k = 0; k < kIterations; ++k) {
          got.push_back(iteration(k, r, be, c));
          Tensor t = be.upload(filled({3}, k, r, r), DType::kF32);
          half->all_reduce(t);
        }
        c.barrier();
        c.set_stream_ordered(false);
        check(got, r, P, be, mode);
      });
    }
  });
}

TEST(NcclCommGpu, AMissingPeerFailsEveryRankWithATimeoutInsteadOfHanging) {
  std::string why;
  const int P = gpus_or_skip(&why);
  if (!P) GTEST_SKIP() << "needs two usable GPUs: " << why;
  GpuRanks g = gpu_ranks(P, &why);
  if (g.comms.empty()) GTEST_SKIP() << why;
  for (auto& c : g.comms) c->set_timeout(std::chrono::milliseconds(2000));
  const auto start = std::chrono::steady_clock::now();
  std::vector<Status> outcome(static_cast<size_t>(P));
  on_gpus(g, [&](int r, Backend& be, Communicator& c) {
    outcome[size_t(r)] = capture([&] {
      c.set_stream_ordered(true);
      const Tensor t = be.upload(random_host({1024}, 3), DType::kF32);
      c.all_reduce(t);  // every rank: completes
      if (r == 0) {
        c.all_reduce(t);  // no peer joins this one
        be.axpby(t, t, 2.0f, t, 0.0f);
      } else {
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
      }
      c.wait_all();
      if (r != 0) {
        // Rank 0 gives up at its deadline; the others learn it at their next call.
        std::this_thread::sleep_for(std::chrono::milliseconds(2500));
        c.barrier();
      }
    });
  });
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("    %d GPUs: every rank returned after %.1f s\n", P, s);
  EXPECT_LT(s, 30.0);
  EXPECT_EQ(outcome[0].code(), StatusCode::kTimeout) << outcome[0].to_string();
  EXPECT_NE(outcome[0].message().find("did not arrive"), std::string::npos) << outcome[0].to_string();
  for (int r = 1; r < P; ++r) EXPECT_FALSE(outcome[size_t(r)].ok()) << "rank " << r;

  // The GPUs are free again: a new world runs.
  g.comms.clear();
  GpuRanks fresh = gpu_ranks(P, &why);
  on_gpus(fresh, [&](int r, Backend& be, Communicator& c) {
    c.set_stream_ordered(true);
    std::vector<Received> got{iteration(0, r, be, c)};
    c.set_stream_ordered(false);
    check(got, r, P, be, "after a failure");
  });
}

TEST(NcclCommGpu, UspAttentionOverNcclMatchesOneGpu) {
  std::string why;
  const int P = gpus_or_skip(&why);
  if (!P) GTEST_SKIP() << "needs two usable GPUs: " << why;
  // FLUX's head size, 10 heads (uneven over 4 or 3 Ulysses ranks), 1000 tokens (uneven over the ranks).
  const int64_t S = 1000, H = 10, D = 128;
  const Tensor qkv_host = random_host({1, S, 3, H, D}, 11);
  const float scale = 1.0f / std::sqrt(float(D));
  Tensor want;
  {
    auto be = create_cuda_backend(0);
    const Tensor qkv = be->upload(qkv_host, DType::kBF16);
    const Tensor out = be->empty({1, S, H, D}, DType::kBF16);
    be->attention(out, Tensor(), qkv.select(2, 0), qkv.select(2, 1), qkv.select(2, 2), scale);
    want = be->download_f32(out);
  }
  // Ring meshes run with K/V passed round and gathered at once (RingKv).
  struct Run {
    MeshDegrees mesh;
    RingKv ring_kv;
  };
  std::vector<Run> runs{{{.ulysses = P}, RingKv::kPass}, {{.ring = P}, RingKv::kPass}, {{.ring = P}, RingKv::kGather}};
  if (P % 2 == 0 && P > 2) {
    runs.push_back({{.ulysses = 2, .ring = P / 2}, RingKv::kPass});
    runs.push_back({{.ulysses = 2, .ring = P / 2}, RingKv::kGather});
  }
  for_each_p2p_transport([&](const std::string& transport) {
    GpuRanks g = gpu_ranks(P, &why);
    if (g.comms.empty()) GTEST_SKIP() << why;
    struct Variant {
      int chunks;
      bool ordered;
    };
    std::vector<Variant> variants;
    for (const int chunks : {1, 2, 3})
      for (const bool ordered : {false, true}) variants.push_back({chunks, ordered});
    for (const auto& [m, ring_kv] : runs) {
      // The mesh's groups once (each is an ncclCommSplit), every variant on them.
      const DeviceMesh mesh = DeviceMesh::create(m, P);
      const SequenceShard shard(S, P);
      std::vector<std::vector<Tensor>> parts(variants.size(), std::vector<Tensor>(size_t(P)));
      const auto t0 = std::chrono::steady_clock::now();
      on_gpus(g, [&](int, Backend& be, Communicator& world) {
        const MeshGroups groups = MeshGroups::create(mesh, world);
        const int s = groups.sp->rank();
        const Tensor qkv = be.upload(qkv_host.slice(1, shard.start(s), shard.count(s)), DType::kBF16);
        for (size_t i = 0; i < variants.size(); ++i) {
          const Tensor out = be.upload(poisoned_host({1, shard.count(s), H, D}), DType::kBF16);
          world.set_stream_ordered(variants[i].ordered);
          for (int k = 0; k < 3; ++k)  // again and again: the transfers of one call behind those of the last
            usp_attention(be, *groups.ulysses, *groups.ring, shard, out, Tensor(), qkv, scale, variants[i].chunks,
                          ring_kv);
          world.set_stream_ordered(false);
          parts[i][size_t(s)] = be.download_f32(out);
        }
      });
      const std::string name = m.flags() + (ring_kv == RingKv::kGather ? " (K/V gathered)" : "") + ", send/recv on " +
                               transport;
      std::fprintf(stderr, "  %s: %zu variants in %.1f s\n", name.c_str(), variants.size(),
                   std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      auto cpu = create_cpu_backend(1);
      for (size_t i = 0; i < variants.size(); ++i) {
        const std::string what = name + ", " + std::to_string(variants[i].chunks) + " head chunks, " +
                                 (variants[i].ordered ? "stream-ordered" : "synchronous");
        const Tensor got = poisoned_host({1, S, H, D});
        for (int s = 0; s < P; ++s) cpu->copy(got.slice(1, shard.start(s), shard.count(s)), parts[i][size_t(s)]);
        const double e = rel_l2(got, want);
        EXPECT_LE(e, 2e-2) << what;
        std::fprintf(stderr, "    %s: rel L2 %.1e against one GPU\n", what.c_str(), e);
      }
    }
  });
}

}  // namespace
}  // namespace paradit
