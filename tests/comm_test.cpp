// The in-process communicator: every collective for worlds of 1–8 ranks (uneven pieces included), a message
// over 64 MiB, timeouts that name the missing rank, abort from one rank stopping the others, reuse after reset.
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <thread>

#include "paradit/comm/in_process.h"
#include "comm_checks.h"
#include "test_util.h"

namespace paradit {
namespace {

using namespace std::chrono_literals;

constexpr int kMaxWorld = 8;

using test::code;
using test::expect_code;
using test::fill_code;
using test::host;

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
    run_ok(n, test::all_to_all_even);
  }
}

TEST(Comm, AllToAllUnevenAlongInnerDim) {
  for (int n = 1; n <= kMaxWorld; ++n) {
    SCOPED_TRACE("world " + std::to_string(n));
    run_ok(n, test::all_to_all_uneven_inner_dim);
  }
}

TEST(Comm, AllToAllVStridedPiecesBf16) {
  for (int n : {2, 3, 5}) {
    SCOPED_TRACE("world " + std::to_string(n));
    run_ok(n, test::all_to_all_v_strided_bf16);
  }
}

TEST(Comm, AllGatherUnevenAndInPlace) {
  for (int n = 1; n <= kMaxWorld; ++n) {
    SCOPED_TRACE("world " + std::to_string(n));
    run_ok(n, test::all_gather_uneven_and_in_place);
  }
}

TEST(Comm, ReduceScatterUneven) {
  for (int n = 1; n <= kMaxWorld; ++n) {
    SCOPED_TRACE("world " + std::to_string(n));
    run_ok(n, test::reduce_scatter_uneven);
  }
}

TEST(Comm, AllReduceF32AndBf16) {
  for (int n = 1; n <= kMaxWorld; ++n) {
    SCOPED_TRACE("world " + std::to_string(n));
    run_ok(n, test::all_reduce_f32_and_bf16);
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
    SCOPED_TRACE("world " + std::to_string(n));
    run_ok(n, test::broadcast_from_every_root);
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
    run_ok(n, test::send_recv_ring_and_self);
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
