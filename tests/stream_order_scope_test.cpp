// When a denoising loop's transfers switch to stream order (StreamOrderScope, an internal piece of the pipeline):
// on CPU ranks whose communicator records the calls. The ranks of a group must switch at the same step whatever
// each remembers, or one would meet a barrier the others never call.
#include "pipeline/stream_order_scope.h"

#include <set>
#include <string>
#include <vector>

#include "paradit/comm/in_process.h"
#include "test_util.h"

namespace paradit {
namespace {

using flux_pipeline::LoopShape;
using flux_pipeline::StreamOrderScope;

// Forwards every call to a rank's communicator and writes down the ones the scope makes, with the loop step
// they came in.
class Recording final : public Communicator {
 public:
  Recording(Communicator& inner, const int& step, std::vector<std::string>& log)
      : inner_(inner), step_(step), log_(log) {}

  int rank() const override { return inner_.rank(); }
  int size() const override { return inner_.size(); }
  const std::string& name() const override { return inner_.name(); }
  const std::vector<int>& members() const override { return inner_.members(); }
  void all_to_all_v(std::span<const Tensor> recv, std::span<const Tensor> send) override {
    inner_.all_to_all_v(recv, send);
  }
  void all_gather_v(std::span<const Tensor> recv, const Tensor& send) override { inner_.all_gather_v(recv, send); }
  void reduce_scatter_v(const Tensor& recv, std::span<const Tensor> send) override {
    inner_.reduce_scatter_v(recv, send);
  }
  void all_reduce(const Tensor& t) override {
    note("all_reduce");
    inner_.all_reduce(t);
  }
  void broadcast(const Tensor& t, int root) override { inner_.broadcast(t, root); }
  void barrier() override {
    note("barrier");
    inner_.barrier();
  }
  std::unique_ptr<CommRequest> start(std::vector<P2POp> ops) override { return inner_.start(std::move(ops)); }
  std::unique_ptr<Communicator> split(int color, int key, const std::string& name) override {
    return inner_.split(color, key, name);
  }
  void abort(const std::string& reason) noexcept override { inner_.abort(reason); }
  void set_stream_ordered(bool on) override { note(on ? "on" : "off"); }

 private:
  void note(const std::string& what) { log_.push_back(what + "@" + std::to_string(step_)); }
  Communicator& inner_;
  const int& step_;
  std::vector<std::string>& log_;
};

using Log = std::vector<std::string>;

// One loop of `steps` steps on every rank; warm[r] is rank r's memory of the shapes it ran. Returns each rank's
// calls. throw_at >= 0: every rank leaves the loop by an exception before that step.
std::vector<Log> loop(std::vector<std::set<LoopShape>>& warm, int steps, LoopShape shape, int throw_at = -1) {
  const int n = int(warm.size());
  std::vector<Log> logs(static_cast<size_t>(n));
  InProcessGroup group(n);
  const auto outcomes = run_ranks(group, [&](Communicator& world) {
    const int r = world.rank();
    auto be = create_cpu_backend(1);
    int step = -1;  // before the loop
    Recording rec(world, step, logs[size_t(r)]);
    // Caught here, not by run_ranks: a rank leaving with an error would abort the group under the others.
    const Status s = capture([&] {
      StreamOrderScope order(*be, &rec, warm[size_t(r)], shape);
      for (step = 0; step < steps; ++step) {
        if (step == throw_at) PD_THROW(kInternal, "a failing step");
        order.before_step(step);
      }
      order.finish();
    });
    EXPECT_EQ(s.ok(), throw_at < 0) << s.to_string();
  });
  for (int r = 0; r < n; ++r) EXPECT_TRUE(outcomes[size_t(r)].ok()) << outcomes[size_t(r)].to_string();
  return logs;
}

TEST(StreamOrderScope, NewShapesRunTheFirstStepSynchronouslyThenEveryRankSwitchesAtABarrier) {
  std::vector<std::set<LoopShape>> warm(3);
  const LoopShape shape{1024, 1024, 512, 0};
  for (const Log& log : loop(warm, 4, shape)) EXPECT_EQ(log, (Log{"all_reduce@-1", "barrier@1", "on@1", "off@4"}));
  // Every rank now knows the shapes: stream order from the first step, no barrier.
  for (const Log& log : loop(warm, 4, shape)) EXPECT_EQ(log, (Log{"all_reduce@-1", "on@0", "off@4"}));
  // Other shapes are new again.
  for (const Log& log : loop(warm, 4, {1024, 768, 512, 0}))
    EXPECT_EQ(log, (Log{"all_reduce@-1", "barrier@1", "on@1", "off@4"}));
}

TEST(StreamOrderScope, RanksThatRememberDifferentlyStillSwitchTogether) {
  // Rank 1 lost its memory (say its last request failed after the others finished): all take the safe way.
  const LoopShape shape{512, 512, 256, 1};
  std::vector<std::set<LoopShape>> warm{{shape}, {}, {shape}, {shape}};
  for (const Log& log : loop(warm, 3, shape)) EXPECT_EQ(log, (Log{"all_reduce@-1", "barrier@1", "on@1", "off@3"}));
}

TEST(StreamOrderScope, OneStepLoopsAndSingleRanksNeverSwitch) {
  std::vector<std::set<LoopShape>> two(2), one(1);
  for (const Log& log : loop(two, 1, {256, 256, 77, 0})) EXPECT_EQ(log, (Log{"all_reduce@-1"}));
  for (const Log& log : loop(one, 5, {256, 256, 77, 0})) EXPECT_TRUE(log.empty());
}

TEST(StreamOrderScope, LeavingByAnExceptionSwitchesBackAndRemembersNothing) {
  std::vector<std::set<LoopShape>> warm(2);
  const LoopShape shape{256, 256, 77, 0};
  for (const Log& log : loop(warm, 5, shape, 3)) EXPECT_EQ(log, (Log{"all_reduce@-1", "barrier@1", "on@1", "off@3"}));
  for (const auto& w : warm) EXPECT_TRUE(w.empty());
}

}  // namespace
}  // namespace paradit
