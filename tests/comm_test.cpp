// The in-process communicator: every collective for worlds of 1–8 ranks (uneven pieces included), a message
// over 64 MiB, timeouts that name the missing rank, abort from one rank stopping the others, reuse after reset.
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <thread>

#include "paradit/comm/in_process.h"
#include "test_util.h"

namespace paradit {
namespace {

using namespace std::chrono_literals;

constexpr int kMaxWorld = 8;

// A value that says who sent it to whom and which element it is; exact in f32 (and in bf16 for small ints).
float code(int from, int to, int64_t i) { return float(from * 10000 + to * 1000 + i); }

Tensor host(const Shape& shape, DType dt = DType::kF32) { return Tensor::empty(shape, dt, cpu_allocator()); }

// Fills t (contiguous f32) with code(from, to, i) over its elements.
void fill_code(const Tensor& t, int from, int to) {
  float* p = t.data_as<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = code(from, to, i);
}

// Checks a (possibly strided) f32 view element by element against code(from, to, i) in row-major order.
void expect_code(const Tensor& t, int from, int to) {
  Tensor c = test::to_contiguous_f32(t);
  const float* p = c.data_as<float>();
  int bad = 0;
  for (int64_t i = 0; i < c.numel() && bad < 5; ++i)
    if (p[i] != code(from, to, i)) {
      ADD_FAILURE() << "piece " << from << "->" << to << " element " << i << ": " << p[i]
                    << " != " << code(from, to, i);
      ++bad;
    }
}

void expect_all_ok(const std::vector<Status>& outcomes) {
  for (size_t r = 0; r < outcomes.size(); ++r)
    EXPECT_TRUE(outcomes[r].ok()) << "rank " << r << ": " << outcomes[r].to_string();
}

void run_ok(int world, const std::function<void(Communicator&)>& fn) {
  InProcessGroup group(world);
  expect_all_ok(run_ranks(group, fn));
}

TEST(Comm, AllToAllEven) {
  for (int n = 1; n <= kMaxWorld; ++n) {
    SCOPED_TRACE("world " + std::to_string(n));
    run_ok(n, [n](Communicator& c) {
      const int me = c.rank();
      Tensor send = host({n * 3, 4}), recv = host({n * 3, 4});
      for (int p = 0; p < n; ++p) fill_code(send.slice(0, p * 3, 3), me, p);
      c.all_to_all(recv, send);
      for (int p = 0; p < n; ++p) expect_code(recv.slice(0, p * 3, 3), p, me);
    });
  }
}

TEST(Comm, AllToAllUnevenAlongInnerDim) {
  // Rank a sends (a + 2b) % 3 columns to rank b (zero included), along dim 1 of a [2, *, 3] tensor.
  auto count = [](int from, int to) -> int64_t { return (from + 2 * to) % 3; };
  for (int n = 1; n <= kMaxWorld; ++n) {
    SCOPED_TRACE("world " + std::to_string(n));
    run_ok(n, [&, n](Communicator& c) {
      const int me = c.rank();
      Counts sc(n), rc(n);
      for (int p = 0; p < n; ++p) {
        sc[p] = count(me, p);
        rc[p] = count(p, me);
      }
      int64_t st = 0, rt = 0;
      for (int p = 0; p < n; ++p) st += sc[p], rt += rc[p];
      Tensor send = host({2, st, 3}), recv = test::poisoned_host({2, rt, 3});
      int64_t off = 0;
      for (int p = 0; p < n; ++p) {
        Tensor piece = host({2, sc[p], 3});
        fill_code(piece, me, p);
        for (int b = 0; b < 2; ++b)
          std::copy(piece.data_as<float>() + b * sc[p] * 3, piece.data_as<float>() + (b + 1) * sc[p] * 3,
                    send.data_as<float>() + (b * st + off) * 3);
        off += sc[p];
      }
      c.all_to_all(recv, send, 1, sc, rc);
      off = 0;
      for (int p = 0; p < n; ++p) {
        expect_code(recv.slice(1, off, rc[p]), p, me);
        off += rc[p];
      }
    });
  }
}

TEST(Comm, AllToAllVStridedPiecesBf16) {
  // Pieces are strided views on both sides (heads out, tokens in), as Ulysses uses them.
  for (int n : {2, 3, 5}) {
    run_ok(n, [n](Communicator& c) {
      const int me = c.rank();
      Tensor send = host({1, 2, n, 4}, DType::kBF16), recv = host({1, 2 * n, 1, 4}, DType::kBF16);
      std::vector<Tensor> s(n), r(n);
      for (int p = 0; p < n; ++p) {
        Tensor vals = host({1, 2, 1, 4});
        fill_code(vals, me, p);
        s[p] = send.slice(2, p, 1);
        for (int64_t i = 0; i < 8; ++i)
          s[p].data_as<uint16_t>()[(i / 4) * s[p].stride(1) + i % 4] = f32_to_bf16(vals.data_as<float>()[i]);
        r[p] = recv.slice(1, 2 * p, 2);
      }
      c.all_to_all_v(r, s);
      for (int p = 0; p < n; ++p) {
        Tensor got = test::to_contiguous_f32(r[p]);
        for (int64_t i = 0; i < 8; ++i) EXPECT_EQ(got.data_as<float>()[i], bf16_to_f32(f32_to_bf16(code(p, me, i))));
      }
    });
  }
}

TEST(Comm, AllGatherUnevenAndInPlace) {
  for (int n = 1; n <= kMaxWorld; ++n) {
    SCOPED_TRACE("world " + std::to_string(n));
    run_ok(n, [n](Communicator& c) {
      const int me = c.rank();
      Counts counts(n);
      int64_t total = 0;
      for (int p = 0; p < n; ++p) total += counts[p] = p % 3 + 1;
      // Along dim 1 of [2, *, 5], into a separate buffer.
      Tensor send = host({2, counts[me], 5}), recv = test::poisoned_host({2, total, 5});
      fill_code(send, me, 0);
      c.all_gather(recv, send, 1, counts);
      int64_t off = 0;
      for (int p = 0; p < n; ++p) {
        expect_code(recv.slice(1, off, counts[p]), p, 0);
        off += counts[p];
      }
      // In place: the contribution is this rank's own piece of the output.
      Tensor buf = test::poisoned_host({total, 3});
      off = 0;
      for (int p = 0; p < me; ++p) off += counts[p];
      Tensor mine = buf.slice(0, off, counts[me]);
      fill_code(mine, me, 1);
      c.all_gather(buf, mine, 0, counts);
      off = 0;
      for (int p = 0; p < n; ++p) {
        expect_code(buf.slice(0, off, counts[p]), p, 1);
        off += counts[p];
      }
    });
  }
}

TEST(Comm, ReduceScatterUneven) {
  for (int n = 1; n <= kMaxWorld; ++n) {
    SCOPED_TRACE("world " + std::to_string(n));
    run_ok(n, [n](Communicator& c) {
      const int me = c.rank();
      Counts counts(n);
      int64_t total = 0;
      for (int p = 0; p < n; ++p) total += counts[p] = (p * 2) % 3 + 1;
      Tensor send = host({total, 3});
      for (int64_t i = 0; i < send.numel(); ++i) send.data_as<float>()[i] = float((me + 1) * (i + 1));
      Tensor recv = test::poisoned_host({counts[me], 3});
      c.reduce_scatter(recv, send, 0, counts);
      int64_t off = 0;
      for (int p = 0; p < me; ++p) off += counts[p];
      const float ranks_sum = float(n * (n + 1) / 2);
      for (int64_t i = 0; i < recv.numel(); ++i)
        EXPECT_EQ(recv.data_as<float>()[i], ranks_sum * float(off * 3 + i + 1)) << "element " << i;
    });
  }
}

TEST(Comm, AllReduceF32AndBf16) {
  for (int n = 1; n <= kMaxWorld; ++n) {
    SCOPED_TRACE("world " + std::to_string(n));
    run_ok(n, [n](Communicator& c) {
      const int me = c.rank();
      Tensor t = host({7, 9});
      for (int64_t i = 0; i < t.numel(); ++i) t.data_as<float>()[i] = float(me * 100 + i);
      c.all_reduce(t);
      for (int64_t i = 0; i < t.numel(); ++i) EXPECT_EQ(t.data_as<float>()[i], float(100 * n * (n - 1) / 2 + n * i));
      Tensor b = host({5}, DType::kBF16);
      for (int64_t i = 0; i < 5; ++i) b.data_as<uint16_t>()[i] = f32_to_bf16(float(me + i));
      c.all_reduce(b);
      for (int64_t i = 0; i < 5; ++i) EXPECT_EQ(bf16_to_f32(b.data_as<uint16_t>()[i]), float(n * (n - 1) / 2 + n * i));
    });
  }
}

TEST(Comm, AllReduceGivesTheSameBitsOnEveryRank) {
  constexpr int n = 7;
  std::vector<Tensor> results(n);
  run_ok(n, [&](Communicator& c) {
    Tensor t = test::random_host({1000}, 100 + c.rank());
    c.all_reduce(t);
    results[c.rank()] = t;
  });
  for (int r = 1; r < n; ++r)
    EXPECT_EQ(0, std::memcmp(results[r].data(), results[0].data(), results[0].nbytes())) << "rank " << r;
}

TEST(Comm, BroadcastFromEveryRoot) {
  for (int n = 1; n <= kMaxWorld; ++n) {
    run_ok(n, [n](Communicator& c) {
      for (int root = 0; root < n; ++root) {
        Tensor t = host({3, 4});
        fill_code(t, c.rank(), 0);
        c.broadcast(t, root);
        expect_code(t, root, 0);
      }
    });
  }
}

TEST(Comm, BarrierWaitsForEveryRank) {
  for (int n = 1; n <= kMaxWorld; ++n) {
    std::atomic<int> before{0};
    run_ok(n, [&, n](Communicator& c) {
      std::this_thread::sleep_for(std::chrono::milliseconds(c.rank()));
      before.fetch_add(1);
      c.barrier();
      EXPECT_EQ(before.load(), n);
      c.barrier();  // nobody increments again before everyone has checked
    });
  }
}

TEST(Comm, SendRecvRingAndSelf) {
  for (int n = 1; n <= kMaxWorld; ++n) {
    SCOPED_TRACE("world " + std::to_string(n));
    run_ok(n, [n](Communicator& c) {
      const int me = c.rank(), next = (me + 1) % n, prev = (me + n - 1) % n;
      // Messages of a different size from each rank, several rounds in flight order.
      for (int round = 0; round < 3; ++round) {
        Tensor a = host({me + 1, 2}), b = host({me + 2});
        fill_code(a, me, round);
        fill_code(b, me, round + 5);
        Tensor ra = test::poisoned_host({prev + 1, 2}), rb = test::poisoned_host({prev + 2});
        auto req = c.start({P2POp::send(a, next), P2POp::send(b, next), P2POp::recv(ra, prev), P2POp::recv(rb, prev)});
        req->wait();
        expect_code(ra, prev, round);
        expect_code(rb, prev, round + 5);
      }
      Tensor self = host({4}), got = test::poisoned_host({4});
      fill_code(self, me, 9);
      c.start({P2POp::recv(got, me), P2POp::send(self, me)})->wait();
      expect_code(got, me, 9);
    });
  }
}

TEST(Comm, BlockingSendRecvPair) {
  run_ok(2, [](Communicator& c) {
    Tensor t = host({6});
    if (c.rank() == 0) {
      fill_code(t, 0, 1);
      c.send(t, 1);
    } else {
      c.recv(t, 0);
      expect_code(t, 0, 1);
    }
  });
}

TEST(Comm, MessagesLargerThan64MiB) {
  // Both ranks send 68 MiB to each other at once: the pattern that deadlocks unbatched NCCL send/recv.
  constexpr int64_t kElems = 17 << 20;
  run_ok(2, [](Communicator& c) {
    const int me = c.rank(), peer = 1 - me;
    Tensor send = host({kElems}), recv = host({kElems});
    float* s = send.data_as<float>();
    for (int64_t i = 0; i < kElems; ++i) s[i] = float(me * kElems + i);
    c.start({P2POp::send(send, peer), P2POp::recv(recv, peer)})->wait();
    const float* r = recv.data_as<float>();
    int64_t bad = 0;
    for (int64_t i = 0; i < kElems; ++i) bad += r[i] != float(peer * kElems + i);
    EXPECT_EQ(bad, 0);
    // And a collective of the same size.
    Tensor gathered = host({2 * kElems});
    c.all_gather(gathered, send);
    EXPECT_EQ(gathered.data_as<float>()[kElems + 12345], float(kElems + 12345));
  });
}

TEST(Comm, CollectiveTimesOutNamingTheMissingRank) {
  InProcessGroup group(3);
  const auto t0 = std::chrono::steady_clock::now();
  auto outcomes = run_ranks(group, [](Communicator& c) {
    c.set_timeout(200ms);
    if (c.rank() == 2) return;  // never arrives
    Tensor t = host({3, 2});
    c.all_to_all(t, host({3, 2}));
  });
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
  EXPECT_TRUE(outcomes[2].ok());
  for (int r : {0, 1}) {
    EXPECT_EQ(outcomes[r].code(), StatusCode::kTimeout) << outcomes[r].to_string();
    EXPECT_NE(outcomes[r].message().find("all_to_all"), std::string::npos) << outcomes[r].message();
    EXPECT_NE(outcomes[r].message().find("rank 2 did not arrive"), std::string::npos) << outcomes[r].message();
    EXPECT_NE(outcomes[r].message().find("world {0, 1, 2}"), std::string::npos) << outcomes[r].message();
  }
  // The late rank learns it too, at once, instead of waiting for ranks that gave up.
  auto late = run_ranks(group, [](Communicator& c) {
    if (c.rank() == 2) c.barrier();
  });
  EXPECT_EQ(late[2].code(), StatusCode::kTimeout);
}

TEST(Comm, RecvTimesOutNamingThePeer) {
  InProcessGroup group(2);
  auto outcomes = run_ranks(group, [](Communicator& c) {
    c.set_timeout(150ms);
    if (c.rank() == 0) c.recv(host({4}), 1);
  });
  EXPECT_EQ(outcomes[0].code(), StatusCode::kTimeout);
  EXPECT_NE(outcomes[0].message().find("rank 1 did not post the send matching our recv"), std::string::npos)
      << outcomes[0].message();
}

TEST(Comm, FailingRankCancelsTheOthers) {
  InProcessGroup group(4);
  auto outcomes = run_ranks(group, [](Communicator& c) {
    if (c.rank() == 2) PD_THROW(kIoError, "disk on fire");
    Tensor t = host({8});
    fill_code(t, c.rank(), 0);
    c.all_reduce(t);
    c.barrier();
  });
  EXPECT_EQ(outcomes[2].code(), StatusCode::kIoError);
  for (int r : {0, 1, 3}) {
    EXPECT_EQ(outcomes[r].code(), StatusCode::kCancelled) << outcomes[r].to_string();
    EXPECT_NE(outcomes[r].message().find("rank 2 failed: "), std::string::npos) << outcomes[r].message();
    EXPECT_NE(outcomes[r].message().find("disk on fire"), std::string::npos) << outcomes[r].message();
  }
  EXPECT_EQ(first_failure(outcomes).code(), StatusCode::kIoError);

  // The same group serves a new run once reset.
  group.reset();
  expect_all_ok(run_ranks(group, [](Communicator& c) {
    Tensor t = host({2});
    t.data_as<float>()[0] = 1.0f;
    t.data_as<float>()[1] = float(c.rank());
    c.all_reduce(t);
    EXPECT_EQ(t.data_as<float>()[0], 4.0f);
    EXPECT_EQ(t.data_as<float>()[1], 6.0f);
  }));
}

TEST(Comm, ExplicitAbortStopsPendingAndLaterCalls) {
  InProcessGroup group(3);
  auto outcomes = run_ranks(group, [](Communicator& c) {
    if (c.rank() == 1) {
      std::this_thread::sleep_for(50ms);  // the others are already waiting
      c.abort("out of patience");
      return;
    }
    c.barrier();
  });
  EXPECT_TRUE(outcomes[1].ok());
  for (int r : {0, 2}) {
    EXPECT_EQ(outcomes[r].code(), StatusCode::kCancelled);
    EXPECT_EQ(outcomes[r].message(), "rank 1 failed: out of patience");
  }
}

TEST(Comm, MismatchedCallsFailOnEveryRank) {
  InProcessGroup group(2);
  auto outcomes = run_ranks(group, [](Communicator& c) {
    Tensor t = host({4});
    if (c.rank() == 0)
      c.all_reduce(t);
    else
      c.broadcast(t, 0);
  });
  for (int r : {0, 1}) {
    EXPECT_EQ(outcomes[r].code(), StatusCode::kInvalidArgument) << outcomes[r].to_string();
    EXPECT_NE(outcomes[r].message().find("mismatched collectives"), std::string::npos) << outcomes[r].message();
  }
  group.reset();
  outcomes = run_ranks(group, [](Communicator& c) {
    // Rank 0 sends 2 rows to rank 1, which expects 3 from it.
    c.all_to_all(host({4, 5}), host({4, 5}), 0, {2, 2}, c.rank() == 0 ? Counts{2, 2} : Counts{3, 1});
  });
  for (int r : {0, 1}) EXPECT_EQ(outcomes[r].code(), StatusCode::kInvalidArgument) << outcomes[r].to_string();
}

TEST(Comm, SplitGroupsAndFailuresCrossThem) {
  constexpr int n = 6;
  InProcessGroup group(n);
  expect_all_ok(run_ranks(group, [](Communicator& world) {
    const int me = world.rank();
    // Odd and even ranks, numbered in reverse.
    auto sub = world.split(me % 2, -me, me % 2 ? "odd" : "even");
    ASSERT_NE(sub, nullptr);
    const std::vector<int> want = me % 2 ? std::vector<int>{5, 3, 1} : std::vector<int>{4, 2, 0};
    EXPECT_EQ(sub->members(), want);
    EXPECT_EQ(sub->name(), me % 2 ? "odd" : "even");
    EXPECT_EQ(sub->world_rank(), me);
    Tensor t = host({1});
    t.data_as<float>()[0] = float(me);
    sub->all_reduce(t);
    EXPECT_EQ(t.data_as<float>()[0], me % 2 ? 9.0f : 6.0f);
    // Ranks that opt out get no group.
    EXPECT_EQ(world.split(me == 0 ? 0 : -1, 0, "solo") == nullptr, me != 0);
  }));

  // A rank failing inside a subgroup stops a rank waiting in the world.
  auto outcomes = run_ranks(group, [](Communicator& world) {
    auto sub = world.split(world.rank() % 2, world.rank(), "half");
    if (world.rank() == 5) {
      sub->abort("subgroup trouble");
      return;
    }
    world.barrier();
  });
  EXPECT_EQ(outcomes[0].code(), StatusCode::kCancelled);
  EXPECT_EQ(outcomes[0].message(), "rank 5 failed: subgroup trouble");
}

TEST(Comm, DefaultTimeoutFromEnvironment) {
  ::setenv("PARADIT_COMM_TIMEOUT", "2.5", 1);
  EXPECT_EQ(default_comm_timeout(), 2500ms);
  ::setenv("PARADIT_COMM_TIMEOUT", "soon", 1);
  EXPECT_THROW(default_comm_timeout(), Error);
  ::unsetenv("PARADIT_COMM_TIMEOUT");
  EXPECT_EQ(default_comm_timeout(), 300s);
}

TEST(Comm, ArgumentErrors) {
  InProcessGroup group(2);
  auto c = group.communicator(0);
  EXPECT_THROW(c->all_to_all(host({3}), host({3})), Error);             // 3 does not split over 2 ranks
  EXPECT_THROW(c->all_gather(host({4}), host({2}), 0, {1, 1}), Error);  // counts do not sum to 4
  EXPECT_THROW(c->broadcast(host({1}), 2), Error);
  EXPECT_THROW(c->send(host({1}), 5), Error);
  EXPECT_THROW(c->all_reduce(host({1}, DType::kF8E4M3)), Error);
  EXPECT_THROW(group.communicator(2), Error);
  EXPECT_THROW(InProcessGroup(0), Error);
}

}  // namespace
}  // namespace paradit
