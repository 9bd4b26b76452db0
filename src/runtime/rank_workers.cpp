#include "runtime/rank_workers.h"

#include <system_error>

namespace paradit::runtime {

RankWorkers::RankWorkers(int ranks) {
  PD_REQUIRE(ranks >= 1, "an engine needs at least one rank, got ", ranks);
  threads_.reserve(size_t(ranks));
  try {
    for (int r = 0; r < ranks; ++r) threads_.emplace_back([this, r] { loop(r); });
  } catch (const std::system_error& e) {
    const size_t started = threads_.size();
    stop();
    PD_THROW(kUnavailable, "could not start the worker thread of rank ", started, " of ", ranks, ": ", e.what());
  }
}

RankWorkers::~RankWorkers() { stop(); }

void RankWorkers::stop() noexcept {
  {
    std::lock_guard lk(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (std::thread& t : threads_) t.join();
  threads_.clear();
}

std::vector<Status> RankWorkers::run(const std::function<void(int rank)>& job) {
  std::unique_lock lk(mu_);
  job_ = &job;
  outcomes_.assign(threads_.size(), Status());
  pending_ = int(threads_.size());
  ++generation_;
  wake_.notify_all();
  done_.wait(lk, [&] { return pending_ == 0; });
  job_ = nullptr;
  return outcomes_;
}

void RankWorkers::loop(int rank) {
  uint64_t seen = 0;
  for (;;) {
    const std::function<void(int)>* job = nullptr;
    {
      std::unique_lock lk(mu_);
      wake_.wait(lk, [&] { return stopping_ || generation_ != seen; });
      if (stopping_) return;
      seen = generation_;
      job = job_;
    }
    Status outcome = capture([&] { (*job)(rank); });
    std::lock_guard lk(mu_);
    outcomes_[size_t(rank)] = std::move(outcome);
    if (--pending_ == 0) done_.notify_all();
  }
}

}  // namespace paradit::runtime
