// PipeFusion's plan: which blocks each stage holds, and the tick-by-tick schedule every rank follows.
//
// Why a precomputed schedule: xDiT's PipeFusion hangs (NCCL deadlocks with sends and receives posted as separate
// operations on one stream, runs stuck for some patch counts — peers.md #284 #310 #363 #147). Here every rank
// derives the same table from (steps, warm-up, patches, stages) before the loop, and at every tick of it posts
// exactly one batch on the pipeline ring — send to the next stage, receive from the previous — whose two sides
// are, by construction, posted by both peers in the same tick with the same shapes. A batch is posted as one
// unit (Communicator::start), so however large the messages, nothing waits on an operation its peer never posts.
#pragma once

#include <cstddef>
#include <vector>

namespace paradit {

// Cuts blocks of the given costs into `stages` contiguous ranges, each of at least one block, as even in cost as
// possible (the largest stage's cost is minimal). Returns stage boundaries: stages + 1 block indices, first 0,
// last costs.size().
std::vector<int> balanced_stages(const std::vector<double>& costs, int stages);

// The same boundaries from an explicit split: the first block of every stage but the first ("--pipefusion-split
// 10,30" for 3 stages). Refuses (kInvalidArgument) a split that is not increasing inside (0, blocks), or of the
// wrong length, saying what is expected.
std::vector<int> explicit_stages(const std::vector<int>& starts, int blocks, int stages);

// One piece of work that flows through every stage: step `step` on image band `patch`, or on the whole sequence
// (patch = kWhole: a warm-up step, exact).
struct PipeFusionItem {
  static constexpr int kWhole = -1;
  int step = 0, patch = kWhole;
};

class PipeFusionSchedule {
 public:
  // warmup: steps run whole (at least 1: it fills the K/V buffers); the others run as `patches` items.
  PipeFusionSchedule(int steps, int warmup, int patches, int stages);

  int stages() const { return stages_; }
  int ticks() const { return ticks_; }
  const std::vector<PipeFusionItem>& items() const { return items_; }
  // The item stage s computes at tick k, or −1 (idle).
  int item_at(int stage, int tick) const;
  // The tick at which stage s computes item i.
  int tick_of(int stage, int item) const { return tick_[size_t(stage)][size_t(item)]; }

 private:
  int stages_, ticks_ = 0;
  std::vector<PipeFusionItem> items_;
  std::vector<std::vector<int>> tick_;  // [stage][item]
};

}  // namespace paradit
