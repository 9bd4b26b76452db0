// The MPI communicator across processes (ctest starts it with `mpirun -np 2`): the collectives and point-to-point
// checks every host transport passes (support/comm_checks.h), split groups, a timeout naming the op and group,
// abort from one process stopping the other's pending and later calls, and pieces that do not fit. Each test
// runs on every process in the same order, each on a fresh world, so one failure cannot leak into the next.
#include <chrono>
#include <cstring>
#include <thread>

#include "comm_checks.h"
#include "paradit/comm/mpi.h"
#include "test_util.h"

namespace paradit {
namespace {

using namespace std::chrono_literals;
using test::fill_code;
using test::host;

class MpiComm : public ::testing::Test {
 protected:
  void SetUp() override {
    if (mpi_launch_size() < 2) GTEST_SKIP() << "not started by mpirun with 2 or more processes";
    world_ = create_mpi_world();
    world_->set_timeout(30s);  // a check that fails on one process must not hold the other for minutes
  }
  std::unique_ptr<Communicator> world_;
};

TEST_F(MpiComm, WorldIsEveryProcess) {
  EXPECT_EQ(world_->size(), mpi_process().size);
  EXPECT_EQ(world_->rank(), mpi_process().rank);
  EXPECT_EQ(world_->name(), "world");
  EXPECT_GE(mpi_process().local_size, 1);
}

TEST_F(MpiComm, AllToAll) {
  test::all_to_all_even(*world_);
  test::all_to_all_uneven_inner_dim(*world_);
  test::all_to_all_v_strided_bf16(*world_);
}

TEST_F(MpiComm, AllGather) { test::all_gather_uneven_and_in_place(*world_); }
TEST_F(MpiComm, ReduceScatter) { test::reduce_scatter_uneven(*world_); }
TEST_F(MpiComm, AllReduce) { test::all_reduce_f32_and_bf16(*world_); }
TEST_F(MpiComm, Broadcast) { test::broadcast_from_every_root(*world_); }
TEST_F(MpiComm, SendRecv) { test::send_recv_ring_and_self(*world_); }

TEST_F(MpiComm, AllReduceGivesTheSameBitsOnEveryRank) {
  Tensor t = test::random_host({1000}, 100 + world_->rank());
  world_->all_reduce(t);
  // Every rank broadcasts its result; all must equal rank 0's bit for bit.
  for (int root = 0; root < world_->size(); ++root) {
    Tensor theirs = host({1000});
    std::memcpy(theirs.data(), t.data(), t.nbytes());
    world_->broadcast(theirs, root);
    EXPECT_EQ(0, std::memcmp(theirs.data(), t.data(), t.nbytes())) << "rank " << root << " got other bits";
  }
}

TEST_F(MpiComm, BarrierWaitsForTheSlowestRank) {
  world_->barrier();  // start together (the processes' clocks are not compared: each measures its own wait)
  const auto t0 = std::chrono::steady_clock::now();
  if (world_->rank() == 0) std::this_thread::sleep_for(500ms);
  world_->barrier();
  // The first barrier lets the ranks go close together, not at the same instant: on a loaded machine (CI
  // building beside the tests) a process may leave it a good fraction of a second after the other.
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 250ms);
}

TEST_F(MpiComm, SplitGroups) {
  const int me = world_->rank(), n = world_->size();
  // Everyone in one group, numbered in reverse; then one group per rank.
  auto rev = world_->split(0, -me, "reversed");
  ASSERT_NE(rev, nullptr);
  EXPECT_EQ(rev->rank(), n - 1 - me);
  EXPECT_EQ(rev->world_rank(), me);
  EXPECT_EQ(rev->name(), "reversed");
  test::all_gather_uneven_and_in_place(*rev);
  auto alone = world_->split(me, 0, "alone");
  ASSERT_NE(alone, nullptr);
  EXPECT_EQ(alone->members(), std::vector<int>{me});
  Tensor t = host({3});
  fill_code(t, me, 0);
  alone->all_reduce(t);
  test::expect_code(t, me, 0);
  EXPECT_EQ(world_->split(me == 0 ? 0 : -1, 0, "solo") == nullptr, me != 0);
  world_->barrier();
}

TEST_F(MpiComm, CollectiveTimesOutNamingTheOpAndGroup) {
  world_->barrier();  // start together: on a loaded machine the processes may arrive seconds apart
  world_->set_timeout(1500ms);
  if (world_->rank() == 1) {
    // Never joins the all_reduce; its next call learns of rank 0's timeout instead of waiting. Well after rank
    // 0's deadline, or on a loaded machine this barrier could still meet rank 0's all_reduce.
    std::this_thread::sleep_for(5000ms);
    try {
      world_->barrier();
      ADD_FAILURE() << "the barrier after a timeout did not throw";
    } catch (const Error& e) {
      EXPECT_EQ(e.status().code(), StatusCode::kTimeout) << e.what();
    }
    return;
  }
  const auto t0 = std::chrono::steady_clock::now();
  try {
    world_->all_reduce(host({4}));
    ADD_FAILURE() << "all_reduce without the other rank did not time out";
  } catch (const Error& e) {
    EXPECT_EQ(e.status().code(), StatusCode::kTimeout) << e.what();
    const std::string m = e.status().message();
    EXPECT_NE(m.find("all_reduce"), std::string::npos) << m;
    EXPECT_NE(m.find("world {0, 1"), std::string::npos) << m;
    EXPECT_NE(m.find("rank 1 sent nothing"), std::string::npos) << m;
  }
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
  EXPECT_THROW(world_->barrier(), Error);  // the world stays failed
}

TEST_F(MpiComm, AbortStopsPendingAndLaterCallsOnEveryRank) {
  auto sub = world_->split(0, world_->rank(), "half");
  if (world_->rank() == 1) {
    std::this_thread::sleep_for(200ms);  // the others are already waiting
    sub->abort("out of patience");
    try {
      world_->barrier();
      ADD_FAILURE() << "a call after abort did not throw";
    } catch (const Error& e) {
      EXPECT_EQ(e.status().code(), StatusCode::kCancelled);
      EXPECT_EQ(e.status().message(), "rank 1 failed: out of patience");
    }
    return;
  }
  Tensor big = host({1 << 20});
  fill_code(big, 0, 0);
  try {
    world_->all_reduce(big);  // pending when the abort comes from the other process
    ADD_FAILURE() << "a pending all_reduce was not cancelled";
  } catch (const Error& e) {
    EXPECT_EQ(e.status().code(), StatusCode::kCancelled);
    EXPECT_EQ(e.status().message(), "rank 1 failed: out of patience");
  }
  EXPECT_THROW(world_->start({P2POp::recv(host({2}), 1)})->wait(), Error);
}

TEST_F(MpiComm, PiecesThatDoNotFitFailEveryRank) {
  // Each expects 3 rows from the other: rank 0 sends 2, rank 1 sends 4.
  const int me = world_->rank();
  if (world_->size() != 2) GTEST_SKIP() << "a check for 2 processes";
  try {
    world_->start({P2POp::send(host({me == 0 ? 2 : 4, 5}), 1 - me), P2POp::recv(host({3, 5}), 1 - me)})->wait();
    ADD_FAILURE() << "a mismatched transfer went through";
  } catch (const Error& e) {
    EXPECT_EQ(e.status().code(), StatusCode::kInvalidArgument) << e.what();
    EXPECT_NE(e.status().message().find("bytes"), std::string::npos) << e.what();
  }
}

TEST_F(MpiComm, AFreshWorldWorksAfterFailures) {
  Tensor t = host({2});
  t.data_as<float>()[0] = 1.0f;
  t.data_as<float>()[1] = float(world_->rank());
  world_->all_reduce(t);
  const int n = world_->size();
  EXPECT_EQ(t.data_as<float>()[0], float(n));
  EXPECT_EQ(t.data_as<float>()[1], float(n * (n - 1) / 2));
}

}  // namespace
}  // namespace paradit
